"""The parameter files segmif.launch.py gives segmif_node: the user's params_file (checked, and
rewritten when a relative ``segmif_node:`` section must apply in a namespace) and a second file
with the overrides of the launch arguments. Installed beside the launch file
(share/segmif_ros/launch/), which loads it by path.

Standard library and PyYAML only (no launch, launch_ros or rclpy), so test/test_launch_params.py
runs it anywhere. Section names follow rcl's parameter-file rules: ``/**`` matches any namespace
and node, ``/*`` one token, a relative name is read as absolute (``segmif_node`` =
``/segmif_node``, the root namespace only); sections that apply to a node are merged in the
order their names first appear in the file, the later one winning.
"""
import os
import re
import tempfile

import yaml

NODE_NAME = 'segmif_node'


def node_fqn(ros_namespace):
    """Fully qualified name of segmif_node in the (absolute) namespace PushROSNamespace set."""
    namespace = (ros_namespace or '/').strip('/')
    return f'/{namespace}/{NODE_NAME}' if namespace else f'/{NODE_NAME}'


def parameter_sections(data, prefix=''):
    """[(node name, ros__parameters)] of a parsed parameter file, in file order. Nested keys are
    namespaces (``cam: {segmif_node: {ros__parameters: ...}}`` is ``/cam/segmif_node``)."""
    sections = []
    if not isinstance(data, dict):
        return sections
    for key, value in data.items():
        if key == 'ros__parameters':
            name = prefix or '/'
            sections.append((name if name.startswith('/') else '/' + name, value))
        elif isinstance(value, dict):
            sections.extend(parameter_sections(value, f'{prefix}/{key}' if prefix else str(key)))
    return sections


def section_applies(section, fqn):
    """rclpy's rule: '/*' matches one namespace token, '/**' any number, else the exact name."""
    name = section if section.startswith('/') else '/' + section
    return re.fullmatch(name.replace('/*', r'(/\w+)'), fqn) is not None


def applicable_parameters(data, fqn):
    """The parameters a node named fqn takes from a parsed file (later sections win)."""
    merged = {}
    for name, params in parameter_sections(data):
        if section_applies(name, fqn) and isinstance(params, dict):
            merged.update(params)
    return merged


def rewrite_relative_section(text, fqn):
    """The file's text with a top-level ``segmif_node:`` (relative: rcl reads it as
    ``/segmif_node``, the root namespace only) renamed to fqn, or None when there is nothing to
    rewrite. Only the key's characters change, so every value keeps the exact text rcl parses
    (PyYAML and rcl type scalars such as ``1e-3`` differently)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode) or fqn == '/' + NODE_NAME:
        return None
    spans = [(key.start_mark.index, key.end_mark.index) for key, _ in root.value
             if isinstance(key, yaml.ScalarNode) and key.value == NODE_NAME]
    if not spans:
        return None
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + fqn + text[end:]
    return text


def override_section_name(section_names, fqn):
    """A node name that matches fqn and that no section of the parameter file uses, so that the
    launch overrides are merged after every section of the file."""
    used = {n if n.startswith('/') else '/' + n for n in section_names}
    depth = 0
    while True:
        name = fqn if depth == 0 else '/**' * depth + '/' + NODE_NAME
        if name not in used:
            return name
        depth += 1


def launch_overrides(checkpoint, device, use_sim_time, autostart):
    """Parameters the launch arguments set: checkpoint, device and use_sim_time only when given
    (non-empty), autostart always."""
    overrides = {}
    if checkpoint:
        overrides['checkpoint'] = checkpoint
    if device:
        overrides['device'] = device
    if use_sim_time:
        overrides['use_sim_time'] = use_sim_time == 'true'
    overrides['autostart'] = autostart != 'false'
    return overrides


def load_parameter_file(path, fqn):
    """(text, parsed data, rewritten) of params_file, rewritten when a relative segmif_node
    section was renamed to fqn; RuntimeError when the file cannot be used."""
    if not path or not os.path.isfile(path):
        raise RuntimeError(f"params_file '{path}' does not exist (nothing was started)")
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RuntimeError(f"params_file '{path}' is not valid YAML: {err}") from None
    sections = parameter_sections(data)
    if not sections:
        raise RuntimeError(f"params_file '{path}' has no '<node name>: ros__parameters:' "
                           'section (nothing was started)')
    rewritten = rewrite_relative_section(text, fqn)
    if rewritten is not None:
        text, data = rewritten, yaml.safe_load(rewritten)
        sections = parameter_sections(data)
    if not any(section_applies(name, fqn) for name, _ in sections):
        names = ', '.join(name for name, _ in sections)
        raise RuntimeError(
            f"params_file '{path}' has no section for {fqn} (it has: {names}); use '/**:' or "
            f"'/**/{NODE_NAME}:' for any namespace (nothing was started)")
    return text, data, rewritten is not None


def write_temporary(text):
    with tempfile.NamedTemporaryFile('w', prefix='segmif_params_', suffix='.yaml',
                                     delete=False, encoding='utf-8') as handle:
        handle.write(text)
        return handle.name


def node_parameter_files(params_file, fqn, checkpoint, device, use_sim_time, autostart):
    """The parameter files of segmif_node named fqn, in the order the node must get them, and
    the node's resolved use_sim_time (for RViz2).

    Arguments are the launch arguments' values ('' = not given, see :func:`launch_overrides`).
    Returns ``(params_path, overrides_path, use_sim_time)``: ``params_file`` itself, or a
    temporary copy with its relative ``segmif_node:`` section renamed to fqn; a temporary file
    with the overrides under a section name that comes after every section of ``params_file``
    (:func:`override_section_name`); and the use_sim_time the node gets (bool).
    Raises RuntimeError (nothing written) when ``params_file`` cannot be used
    (:func:`load_parameter_file`).
    """
    text, data, rewritten = load_parameter_file(params_file, fqn)
    params_path = write_temporary(text) if rewritten else params_file
    overrides = launch_overrides(checkpoint, device, use_sim_time, autostart)
    override_name = override_section_name([n for n, _ in parameter_sections(data)], fqn)
    overrides_path = write_temporary(yaml.safe_dump(
        {override_name: {'ros__parameters': overrides}}, default_flow_style=False))
    resolved_sim_time = overrides.get(
        'use_sim_time', applicable_parameters(data, fqn).get('use_sim_time') is True)
    return params_path, overrides_path, resolved_sim_time
