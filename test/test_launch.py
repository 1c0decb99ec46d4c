"""launch/segmif.launch.py, config/segmif.rviz and config/segmif.yaml.

Three groups of tests:

* Static ones that need neither ``launch`` nor ``launch_ros`` (not installable from a package
  registry, so absent from the project venv): the launch file is read with ``ast`` (declared
  arguments, descriptions, choices, the node, its parameters and remappings), the RViz2 config and
  the parameter file with YAML, and the parameter file is compared with the parameters the node
  declares (``segmif_ros.node.parameters.PARAMETERS``).
* Ones that execute the launch file's own code with stand-ins for the launch/launch_ros classes
  (``StubLaunch``): the checks before anything starts (params_file, RViz2), the parameter files
  and ROS arguments given to the node, and, with rclpy, what a node started with exactly those
  arguments gets (parameter precedence in a namespace, the scope of log_level).
* Ones that run where ``launch`` and ``launch_ros`` are importable (a sourced ROS 2 install;
  skipped otherwise): generate_launch_description() is loaded and inspected, its substitutions
  are evaluated in a LaunchContext, and a LaunchService starts segmif_node from it and checks the
  running node (namespace, remappings, parameters) in a live graph, and fails without starting
  anything on a missing params_file or a missing RViz2.
"""
import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'segmif.launch.py'
RVIZ_FILE = REPO / 'config' / 'segmif.rviz'
PARAMS_FILE = REPO / 'config' / 'segmif.yaml'
NODE_DIR = REPO / 'segmif_ros' / 'node'
PACKAGE = 'segmif_ros'
NODE_NAME = 'segmif_node'

BOOLEAN_ARGS = ('autostart', 'rviz', 'fastdds_shm_large')
OPTIONAL_BOOLEAN_ARGS = ('use_sim_time',)  # '' = not given: the parameter file decides
# launch arguments that override params_file only when given ('' = not given)
OPTIONAL_OVERRIDES = ('checkpoint', 'device', 'use_sim_time')
LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'fatal']
# argument name -> default value (None: a substitution, checked separately)
ARGUMENTS = {
    'namespace': '',
    'params_file': None,
    'checkpoint': '',
    'device': '',
    'use_sim_time': '',
    'autostart': 'true',
    'visible_topic': 'visible/image',
    'thermal_topic': 'thermal/image',
    'rviz': 'false',
    'rviz_config': None,
    'log_level': 'info',
    'fastdds_shm_large': 'false',
}
RVIZ_TOPICS = {'fused/image', 'segmentation/color'}


# ------------------------------------------------------------------------------------------------
# Static checks of the launch file (no launch package needed)
# ------------------------------------------------------------------------------------------------
def _call_name(call):
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _module_constants(tree):
    """Module-level NAME = <literal> assignments (e.g. PACKAGE = 'segmif_ros')."""
    constants = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                isinstance(stmt.targets[0], ast.Name):
            try:
                constants[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                pass
    return constants


class LaunchSource:
    """The parsed launch file with helpers that resolve literals and module constants."""

    def __init__(self, path):
        self.text = path.read_text()
        self.tree = ast.parse(self.text, filename=str(path))
        self.constants = _module_constants(self.tree)
        self.calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]

    def value(self, node):
        """Literal value of node (module constants resolved); raises ValueError otherwise."""
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e) for e in node.elts]
        return ast.literal_eval(node)

    def calls_to(self, name, within=None):
        calls = self.calls if within is None else \
            [n for n in ast.walk(within) if isinstance(n, ast.Call)]
        return [c for c in calls if _call_name(c) == name]

    def function(self, name):
        (func,) = [s for s in self.tree.body if isinstance(s, ast.FunctionDef) and s.name == name]
        return func

    @staticmethod
    def keyword(call, name):
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value
        return None

    def declared_arguments(self):
        """name -> DeclareLaunchArgument call."""
        out = {}
        for call in self.calls_to('DeclareLaunchArgument'):
            node = call.args[0] if call.args else self.keyword(call, 'name')
            name = self.value(node)
            assert name not in out, f'launch argument {name!r} declared twice'
            out[name] = call
        return out

    def launch_configurations(self):
        """Names read with LaunchConfiguration('...')."""
        return {self.value(c.args[0]) for c in self.calls_to('LaunchConfiguration') if c.args}

    def nodes(self, package):
        return [c for c in self.calls_to('Node') + self.calls_to('LifecycleNode')
                if self.keyword(c, 'package') is not None and
                self.value(self.keyword(c, 'package')) == package]


@pytest.fixture(scope='module')
def source():
    assert LAUNCH_FILE.is_file(), LAUNCH_FILE
    return LaunchSource(LAUNCH_FILE)


@pytest.fixture(scope='module')
def segmif_node_call(source):
    calls = source.nodes(PACKAGE)
    assert len(calls) == 1, 'expected exactly one node action of package segmif_ros'
    return calls[0]


def test_module_docstring_and_entry_point(source):
    doc = ast.get_docstring(source.tree)
    assert doc and 'ros2 launch segmif_ros segmif.launch.py' in doc
    functions = [s.name for s in source.tree.body if isinstance(s, ast.FunctionDef)]
    assert 'generate_launch_description' in functions
    for name in ARGUMENTS:
        assert f'\n    {name} ' in doc, f'{name} not described in the module docstring'


def test_every_argument_is_declared_with_a_description(source):
    declared = source.declared_arguments()
    assert set(declared) == set(ARGUMENTS)
    for name, call in declared.items():
        description = source.keyword(call, 'description')
        assert description is not None, f'{name}: no description'
        text = source.value(description)
        assert isinstance(text, str) and text.strip(), f'{name}: empty description'


def test_argument_defaults(source):
    declared = source.declared_arguments()
    for name, expected in ARGUMENTS.items():
        default = source.keyword(declared[name], 'default_value')
        assert default is not None, f'{name}: no default_value'
        if expected is not None:
            assert source.value(default) == expected, name
    for name, filename in (('params_file', 'segmif.yaml'), ('rviz_config', 'segmif.rviz')):
        default = source.keyword(declared[name], 'default_value')
        assert isinstance(default, ast.Call) and _call_name(default) == 'PathJoinSubstitution'
        parts = default.args[0]
        assert isinstance(parts, ast.List) and len(parts.elts) == 3
        share = parts.elts[0]
        assert isinstance(share, ast.Call) and _call_name(share) == 'FindPackageShare'
        assert source.value(share.args[0]) == PACKAGE
        assert [source.value(e) for e in parts.elts[1:]] == ['config', filename]
        assert (REPO / 'config' / filename).is_file()


def test_finite_arguments_have_choices(source):
    declared = source.declared_arguments()
    for name in BOOLEAN_ARGS:
        choices = source.keyword(declared[name], 'choices')
        assert choices is not None, f'{name}: no choices'
        assert source.value(choices) == ['true', 'false'], name
    for name in OPTIONAL_BOOLEAN_ARGS:
        assert source.value(source.keyword(declared[name], 'choices')) == ['', 'true', 'false']
    assert source.value(source.keyword(declared['log_level'], 'choices')) == LOG_LEVELS
    for name, call in declared.items():
        choices = source.keyword(call, 'choices')
        if choices is not None and ARGUMENTS[name] is not None:
            assert ARGUMENTS[name] in source.value(choices), f'{name}: default not a choice'


def test_optional_overrides_default_to_not_given(source):
    """Defect 6: device: cuda in the user's file must not be replaced by a launch default."""
    declared = source.declared_arguments()
    for name in OPTIONAL_OVERRIDES:
        assert source.value(source.keyword(declared[name], 'default_value')) == '', name
        description = source.value(source.keyword(declared[name], 'description'))
        assert 'when given' in description and 'params_file' in description, name


def test_every_argument_is_used(source):
    assert source.launch_configurations() == set(ARGUMENTS)


def test_segmif_node(source, segmif_node_call):
    call = segmif_node_call
    # a lifecycle node: launch follows its transitions (OnStateTransition, ChangeState events)
    assert _call_name(call) == 'LifecycleNode'
    assert source.value(source.keyword(call, 'executable')) == 'segmif_node'
    assert source.value(source.keyword(call, 'name')) == NODE_NAME
    assert source.value(source.keyword(call, 'output')) == 'screen'
    # LifecycleNode requires a namespace; '' is relative, so the pushed one is used, not nested
    assert source.value(source.keyword(call, 'namespace')) == ''
    args = source.keyword(call, 'arguments')
    assert ast.unparse(args) == "log_level_arguments(fqn, values['log_level'])"


def test_segmif_node_remappings(source, segmif_node_call):
    remaps = source.keyword(segmif_node_call, 'remappings')
    assert ast.unparse(remaps) == \
        "input_remappings(values['visible_topic'], values['thermal_topic'])"


def test_input_remappings_follow_image_transport(stub_launch):
    """Each image topic, its /compressed transport and the visible CameraInfo, the sibling of
    the image topic (test/test_node_topics.py checks the node gets them)."""
    m = stub_launch.module
    remaps = dict(m.input_remappings('/camera/color/image_raw', 'flir/image_raw'))
    assert remaps == {'visible/image': '/camera/color/image_raw',
                      'thermal/image': 'flir/image_raw',
                      'visible/image/compressed': '/camera/color/image_raw/compressed',
                      'thermal/image/compressed': 'flir/image_raw/compressed',
                      'visible/camera_info': '/camera/color/camera_info'}
    # the sources are the names the node resolves for its inputs
    from segmif_ros.node.topics import node_input_names
    assert set(remaps) == node_input_names()
    node = _segmif_node(stub_launch.setup(visible_topic='/cam/left/image_rect',
                                          thermal_topic='/flir/image_raw'))
    assert dict(node.kwargs['remappings'])['visible/camera_info'] == '/cam/left/camera_info'


def test_segmif_node_parameters(source, segmif_node_call):
    params = source.keyword(segmif_node_call, 'parameters')
    # the (possibly rewritten) file first, the launch overrides after it
    assert ast.unparse(params) == '[params_path, overrides_path]'


def test_checks_come_before_any_process(source):
    """Defect 5: every check that can fail the launch runs before a node action is created, so a
    failed launch (rviz:=true without RViz2, a missing params_file) leaves nothing running."""
    setup = source.function('_launch_setup')
    first_node = min(c.lineno for c in source.calls_to('LifecycleNode', setup) +
                     source.calls_to('Node', setup))
    raises = [n for n in ast.walk(setup) if isinstance(n, ast.Raise)]
    assert raises and all(r.lineno < first_node for r in raises)
    (rviz_check,) = source.calls_to('ExecutableInPackage', setup)
    assert source.value(source.keyword(rviz_check, 'package')) == 'rviz2'
    assert rviz_check.lineno < first_node
    (load,) = source.calls_to('node_parameter_files', setup)  # checks params_file
    assert load.lineno < first_node
    # the processes are created only in _launch_setup, run by an OpaqueFunction of the group
    outside = [c for c in source.calls_to('Node') + source.calls_to('LifecycleNode')
               if not setup.lineno <= c.lineno <= setup.end_lineno]
    assert not outside


def test_node_exit_stops_the_launch(source):
    """A segmif_node that dies does not leave RViz2 (and the launch) running on their own."""
    setup = source.function('_launch_setup')
    (handler,) = source.calls_to('OnProcessExit', setup)
    assert ast.unparse(source.keyword(handler, 'target_action')) == 'segmif_node'
    assert ast.unparse(source.keyword(handler, 'on_exit')) == '_on_segmif_node_exit'
    assert source.calls_to('RegisterEventHandler', setup)


def test_rviz_node(source):
    calls = source.nodes('rviz2')
    assert len(calls) == 1
    call = calls[0]
    assert source.value(source.keyword(call, 'executable')) == 'rviz2'
    assert ast.unparse(source.keyword(call, 'arguments')) == "['-d', values['rviz_config']]"
    # started only when asked: the Node is built inside `if start_rviz:`
    setup = source.function('_launch_setup')
    guarded = [n for n in ast.walk(setup) if isinstance(n, ast.If) and
               ast.unparse(n.test) == 'start_rviz' and call in list(ast.walk(n))]
    assert guarded
    assert ast.unparse(source.keyword(call, 'parameters')) == \
        "[{'use_sim_time': use_sim_time}]"


def test_namespace_is_pushed_for_both_nodes(source, segmif_node_call):
    """RViz2's relative topics only match the node's outputs if both share the namespace."""
    groups = source.calls_to('GroupAction')
    assert len(groups) == 1
    order = [ast.unparse(e) for e in groups[0].args[0].elts]
    assert order == ["PushROSNamespace(LaunchConfiguration('namespace'))", 'shm_profile',
                     'OpaqueFunction(function=_launch_setup)']
    # the namespace is pushed, not also given to the nodes (that would nest it twice)
    assert source.value(source.keyword(segmif_node_call, 'namespace')) == ''
    assert source.keyword(source.nodes('rviz2')[0], 'namespace') is None


def test_large_shm_profile_is_set_for_the_group_when_asked(source):
    """fastdds_shm_large:=true sets FASTDDS_DEFAULT_PROFILES_FILE to the installed profile, a
    file of config/ (installed to share/), before both nodes of the group start."""
    calls = source.calls_to('SetEnvironmentVariable')
    assert len(calls) == 1
    call = calls[0]
    assert source.value(call.args[0]) == 'FASTDDS_DEFAULT_PROFILES_FILE'
    path_parts = [source.value(e) for e in call.args[1].args[0].elts[1:]]
    assert path_parts == ['config', 'fastdds_shm_large.xml']
    assert (REPO / 'config' / 'fastdds_shm_large.xml').is_file()
    assert ast.unparse(source.keyword(call, 'condition')) == \
        "IfCondition(LaunchConfiguration('fastdds_shm_large'))"


# ------------------------------------------------------------------------------------------------
# The launch file's code, run with stand-ins for launch / launch_ros
# ------------------------------------------------------------------------------------------------
class Stub:
    """A launch/launch_ros class: records its arguments; instances are kept per class."""
    created = None

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        type(self).created.append(self)

    def __repr__(self):
        return f'{type(self).__name__}({self.args}, {self.kwargs})'


class StubLaunchConfiguration(Stub):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class StubExecutableInPackage(Stub):
    def perform(self, context):
        package = self.kwargs['package']
        if package not in context.installed:
            raise LookupError(f"package '{package}' not found")
        return f'/opt/ros/lib/{package}/{self.kwargs["executable"]}'


class StubLaunch:
    """The launch file executed with its launch/launch_ros imports replaced by Stub classes."""

    SPECIAL = {'LaunchConfiguration': StubLaunchConfiguration,
               'ExecutableInPackage': StubExecutableInPackage}

    def __init__(self, path=LAUNCH_FILE):
        tree = ast.parse(path.read_text(), filename=str(path))
        self.module = types.ModuleType('segmif_launch_stubbed')
        self.stubs = {}
        body = []
        for stmt in tree.body:
            imports = [n for n in ast.walk(stmt) if isinstance(n, ast.ImportFrom)]
            if imports and all(i.module.split('.')[0] in ('launch', 'launch_ros')
                               for i in imports):
                for alias in (a for i in imports for a in i.names):
                    self._stub(alias.asname or alias.name)
                continue
            body.append(stmt)
        code = compile(ast.Module(body=body, type_ignores=[]), str(path), 'exec')
        self.module.__file__ = str(path)  # it loads launch/segmif_params.py from beside it
        exec(code, self.module.__dict__)  # noqa: S102 - the project's own launch file

    def _stub(self, name):
        base = self.SPECIAL.get(name, Stub)
        cls = type(name, (base,), {'created': []})
        self.stubs[name] = cls
        setattr(self.module, name, cls)

    def created(self, name):
        return self.stubs[name].created

    def reset(self):
        for cls in self.stubs.values():
            cls.created.clear()

    def context(self, ros_namespace='/', installed=(PACKAGE,), **values):
        configurations = {name: default for name, default in ARGUMENTS.items()}
        configurations.update(params_file=str(PARAMS_FILE), rviz_config=str(RVIZ_FILE))
        configurations.update(values)
        configurations['ros_namespace'] = ros_namespace
        return types.SimpleNamespace(launch_configurations=configurations,
                                     installed=set(installed), is_shutdown=False)

    def setup(self, **kwargs):
        """The actions _launch_setup returns for these launch configurations."""
        self.reset()
        return self.module._launch_setup(self.context(**kwargs))


@pytest.fixture(scope='module')
def stub_launch():
    return StubLaunch()


def _segmif_node(actions):
    (node,) = [a for a in actions if type(a).__name__ == 'LifecycleNode']
    return node


def _files(node):
    return [Path(p) for p in node.kwargs['parameters']]


def test_generate_launch_description_with_stubs(stub_launch):
    stub_launch.reset()
    stub_launch.module.generate_launch_description()
    declared = {a.args[0]: a.kwargs for a in stub_launch.created('DeclareLaunchArgument')}
    assert set(declared) == set(ARGUMENTS)
    (opaque,) = stub_launch.created('OpaqueFunction')
    assert opaque.kwargs['function'] is stub_launch.module._launch_setup


def test_logger_helpers(stub_launch):
    m = stub_launch.module
    assert m.node_logger_name('/segmif_node') == 'segmif_node'
    assert m.node_logger_name('/robot/front/segmif_node') == 'robot.front.segmif_node'
    assert m.log_level_arguments('/cam/segmif_node', 'debug') == \
        ['--ros-args', '--log-level', 'cam.segmif_node:=debug']


def test_parameter_files_come_from_the_module_beside_the_launch_file(stub_launch):
    """The params-file logic lives in launch/segmif_params.py (test/test_launch_params.py), not
    in a copy inside the launch file."""
    m = stub_launch.module
    assert Path(m.segmif_params.__file__) == LAUNCH_FILE.with_name('segmif_params.py')
    assert m.segmif_params.NODE_NAME == m.NODE_NAME == NODE_NAME
    assert not hasattr(m, 'load_parameter_file') and not hasattr(m, 'parameter_sections')


def test_default_parameter_file_is_passed_unchanged(stub_launch):
    actions = stub_launch.setup()
    node = _segmif_node(actions)
    files = _files(node)
    assert files[0] == PARAMS_FILE
    overrides = yaml.safe_load(files[1].read_text())
    assert overrides == {'/segmif_node': {'ros__parameters': {'autostart': True}}}
    assert node.kwargs['arguments'] == ['--ros-args', '--log-level', 'segmif_node:=info']
    assert node.kwargs['name'] == NODE_NAME and node.kwargs['namespace'] == ''
    assert not stub_launch.created('Node'), 'RViz2 started although rviz is false'
    (handler,) = stub_launch.created('OnProcessExit')
    assert handler.kwargs['target_action'] is node
    assert actions.index(node) > actions.index(stub_launch.created('RegisterEventHandler')[0])


def test_missing_params_file_fails_before_anything_starts(stub_launch, tmp_path):
    with pytest.raises(RuntimeError, match='does not exist'):
        stub_launch.setup(params_file=str(tmp_path / 'nope.yaml'))
    with pytest.raises(RuntimeError, match='does not exist'):
        stub_launch.setup(params_file='')
    assert not stub_launch.created('LifecycleNode') and not stub_launch.created('Node')


def test_params_file_without_a_section_for_the_node_fails(stub_launch, tmp_path):
    other = tmp_path / 'other.yaml'
    other.write_text('/rear/segmif_node:\n  ros__parameters:\n    device: cuda\n')
    with pytest.raises(RuntimeError, match='no section for /front/segmif_node'):
        stub_launch.setup(params_file=str(other), ros_namespace='/front')
    empty = tmp_path / 'empty.yaml'
    empty.write_text('# nothing\n')
    with pytest.raises(RuntimeError, match='ros__parameters'):
        stub_launch.setup(params_file=str(empty))
    broken = tmp_path / 'broken.yaml'
    broken.write_text('/**: {ros__parameters: [\n')
    with pytest.raises(RuntimeError, match='not valid YAML'):
        stub_launch.setup(params_file=str(broken))
    assert not stub_launch.created('LifecycleNode')


def test_rviz_without_rviz2_fails_before_anything_starts(stub_launch, tmp_path):
    """Defect 5: rviz:=true on a machine without RViz2 starts no segmif_node."""
    with pytest.raises(RuntimeError, match="rviz:=true, but RViz2 cannot be started.*rviz2"):
        stub_launch.setup(rviz='true', installed=(PACKAGE,))
    assert not stub_launch.created('LifecycleNode') and not stub_launch.created('Node')
    with pytest.raises(RuntimeError, match='rviz_config'):
        stub_launch.setup(rviz='true', installed=(PACKAGE, 'rviz2'),
                          rviz_config=str(tmp_path / 'missing.rviz'))
    assert not stub_launch.created('LifecycleNode')


def test_rviz_gets_the_nodes_use_sim_time(stub_launch, tmp_path):
    sim = tmp_path / 'sim.yaml'
    sim.write_text('/**:\n  ros__parameters:\n    use_sim_time: true\n')
    for given, expected in (('', True), ('false', False), ('true', True)):
        actions = stub_launch.setup(rviz='true', installed=(PACKAGE, 'rviz2'),
                                    params_file=str(sim), use_sim_time=given)
        (rviz,) = [a for a in actions if type(a).__name__ == 'Node']
        assert rviz.kwargs['package'] == 'rviz2'
        assert rviz.kwargs['arguments'] == ['-d', str(RVIZ_FILE)]
        assert rviz.kwargs['parameters'] == [{'use_sim_time': expected}], given
    actions = stub_launch.setup(rviz='true', installed=(PACKAGE, 'rviz2'))
    (rviz,) = [a for a in actions if type(a).__name__ == 'Node']
    assert rviz.kwargs['parameters'] == [{'use_sim_time': False}]


def test_node_exit_handler(stub_launch):
    m = stub_launch.module
    context = types.SimpleNamespace(is_shutdown=False)
    stub_launch.reset()
    (action,) = m._on_segmif_node_exit(types.SimpleNamespace(returncode=0), context)
    assert type(action).__name__ == 'Shutdown'
    assert m._on_segmif_node_exit(types.SimpleNamespace(returncode=-2), context)  # Ctrl-C
    with pytest.raises(RuntimeError, match='exited with code 1'):
        m._on_segmif_node_exit(types.SimpleNamespace(returncode=1), context)
    context.is_shutdown = True  # launch is already stopping everything
    assert m._on_segmif_node_exit(types.SimpleNamespace(returncode=1), context) is None


# What segmif_node gets from a command line built like launch_ros' Node does it: a plain rclpy
# node with the same name, namespace and arguments prints its parameters and logger levels.
PROBE = textwrap.dedent('''
    import json, sys
    import rclpy
    from rclpy.node import Node
    rclpy.init(args=sys.argv)
    node = Node('probe', automatically_declare_parameters_from_overrides=True)
    print(json.dumps({
        'fqn': node.get_fully_qualified_name(),
        'parameters': {n: p.value for n, p in node._parameters.items()},
        'node_level': int(node.get_logger().get_effective_level()),
        'child_level': int(node.get_logger().get_child('sync').get_effective_level()),
        'rcl_level': int(rclpy.logging.get_logger('rcl').get_effective_level()),
    }))
    node.destroy_node()
    rclpy.shutdown()
''')


def _run_like_launch_ros(node, ros_namespace):
    pytest.importorskip('rclpy')
    cmd = [sys.executable, '-c', PROBE] + list(node.kwargs['arguments']) + [
        '--ros-args', '-r', f'__node:={node.kwargs["name"]}', '-r', f'__ns:={ros_namespace}']
    for path in node.kwargs['parameters']:
        cmd += ['--params-file', str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_segmif_node_section_applies_in_a_namespace(stub_launch, tmp_path):
    """Defect 6: a 'segmif_node:' section is used under namespace:=cam, and the values rcl types
    from the text (5e-2 a double) keep their type."""
    rig = tmp_path / 'rig.yaml'
    rig.write_text(textwrap.dedent('''\
        /**:
          ros__parameters:
            queue_size: 7
        segmif_node:
          ros__parameters:
            device: cuda
            slop: 5e-2
        '''))
    node = _segmif_node(stub_launch.setup(params_file=str(rig), ros_namespace='/cam'))
    got = _run_like_launch_ros(node, '/cam')
    assert got['fqn'] == '/cam/segmif_node'
    assert got['parameters']['device'] == 'cuda'  # not the launch default, not ignored
    assert got['parameters']['slop'] == 0.05
    assert got['parameters']['queue_size'] == 7
    assert got['parameters']['autostart'] is True
    assert 'checkpoint' not in got['parameters']  # not given: the node's own default applies


@pytest.mark.parametrize('order', ['wildcard_first', 'node_first'])
def test_given_arguments_override_the_file_in_any_section_order(stub_launch, tmp_path, order):
    sections = {
        'wildcard': '/**:\n  ros__parameters:\n    device: cuda\n    use_sim_time: true\n'
                    '    checkpoint: /from/file.pt\n    autostart: false\n',
        'node': '/**/segmif_node:\n  ros__parameters:\n    device: cuda:2\n',
    }
    text = sections['wildcard'] + sections['node'] if order == 'wildcard_first' else \
        sections['node'] + sections['wildcard']
    rig = tmp_path / 'rig.yaml'
    rig.write_text(text)
    node = _segmif_node(stub_launch.setup(params_file=str(rig), ros_namespace='/cam'))
    not_given = _run_like_launch_ros(node, '/cam')['parameters']
    # rclpy merges sections in the order their names first appear: the file decides
    assert not_given['device'] == ('cuda:2' if order == 'wildcard_first' else 'cuda')
    assert not_given['use_sim_time'] is True and not_given['checkpoint'] == '/from/file.pt'
    assert not_given['autostart'] is True  # autostart is always the launch argument's
    node = _segmif_node(stub_launch.setup(
        params_file=str(rig), ros_namespace='/cam', device='cpu', use_sim_time='false',
        checkpoint='/given.pt', autostart='false'))
    given = _run_like_launch_ros(node, '/cam')['parameters']
    assert (given['device'], given['use_sim_time'], given['checkpoint'], given['autostart']) == \
        ('cpu', False, '/given.pt', False)


def test_log_level_is_scoped_to_the_node_logger(stub_launch):
    """Defect 8: log_level:=debug turns the node's logger (and its children) to debug, in a
    namespace too, and leaves rcl at info."""
    node = _segmif_node(stub_launch.setup(log_level='debug', ros_namespace='/robot/cam'))
    got = _run_like_launch_ros(node, '/robot/cam')
    assert got['fqn'] == '/robot/cam/segmif_node'
    assert got['node_level'] == 10 and got['child_level'] == 10  # DEBUG
    assert got['rcl_level'] == 20  # INFO


def test_autostart_is_a_node_parameter():
    """The launch argument sets the node's autostart parameter (issue 14, the lifecycle node)."""
    parameters = _node_parameters()
    if 'autostart' not in parameters:
        pytest.skip('segmif_ros.node.parameters does not declare autostart yet')
    assert parameters['autostart'][0] is True


# ------------------------------------------------------------------------------------------------
# RViz2 config
# ------------------------------------------------------------------------------------------------
def test_rviz_config_shows_fused_and_colour_images():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    assert isinstance(config, dict)
    assert {'Panels', 'Visualization Manager', 'Window Geometry'} <= set(config)
    assert any(p.get('Class') == 'rviz_common/Displays' for p in config['Panels'])
    manager = config['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == 'visible_camera'
    images = [d for d in manager['Displays'] if d.get('Class') == 'rviz_default_plugins/Image']
    topics = {d['Topic']['Value'] for d in images}
    assert topics == RVIZ_TOPICS
    for display in images:
        assert display['Enabled'] is True and display['Name']
        topic = display['Topic']
        assert topic['Reliability Policy'] == 'Reliable'
        assert topic['Durability Policy'] == 'Volatile'
        assert topic['History Policy'] == 'Keep Last'
        assert isinstance(topic['Depth'], int) and topic['Depth'] > 0
        # relative, so that they resolve in the launch file's namespace
        assert not topic['Value'].startswith('/')
    assert len({d['Name'] for d in images}) == len(images)
    # the topics are ones the node publishes sensor_msgs/Image on
    assert RVIZ_TOPICS <= _node_topics('create_publisher')


# ------------------------------------------------------------------------------------------------
# Parameter file <-> node parameters
# ------------------------------------------------------------------------------------------------
def _node_topics(method):
    """Topic names of <node>.<method>(Type, 'name', ...) calls in segmif_ros/node/*.py."""
    trees = [ast.parse(path.read_text()) for path in sorted(NODE_DIR.glob('*.py'))]
    topics = set()
    for call in (c for tree in trees for c in ast.walk(tree)):
        if isinstance(call, ast.Call) and _call_name(call) == method and len(call.args) >= 2 and \
                isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
            topics.add(call.args[1].value)
    return topics


def _node_parameters():
    node = pytest.importorskip('segmif_ros.node.parameters')
    return node.PARAMETERS


def _same_typed(a, b):
    """Equal with equal types: a declared double rejects an integer override and vice versa."""
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and \
            all(_same_typed(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_parameter_file_matches_node_parameters():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(data) == ['/**'], 'one wildcard section, so the file works in any namespace'
    assert list(data['/**']) == ['ros__parameters']
    params = data['/**']['ros__parameters']
    declared = _node_parameters()
    missing_in_file = sorted(set(declared) - set(params))
    unknown_in_file = sorted(set(params) - set(declared))
    assert not missing_in_file, f'declared by the node but not in {PARAMS_FILE.name}'
    assert not unknown_in_file, f'in {PARAMS_FILE.name} but not declared by the node'
    for name, (default, description, _extra) in declared.items():
        assert description.strip(), name
        assert _same_typed(params[name], default), \
            f'{name}: {params[name]!r} in {PARAMS_FILE.name}, {default!r} in the node'


# ------------------------------------------------------------------------------------------------
# With launch / launch_ros (a ROS 2 install); skipped where they are not importable
# ------------------------------------------------------------------------------------------------
def _load_launch_module():
    # the .actions submodules: run from the repository root, `import launch` alone finds the
    # launch/ directory of this repository (a namespace package) when the real one is absent
    pytest.importorskip('launch.actions')
    pytest.importorskip('launch_ros.actions')
    spec = importlib.util.spec_from_file_location('segmif_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk_entities(entities):
    from launch.actions import GroupAction
    for entity in entities:
        yield entity
        if isinstance(entity, GroupAction):
            yield from _walk_entities(entity.get_sub_entities())


def _setup_in_context(module, values):
    """(context, actions of the OpaqueFunction) for these launch configurations."""
    from launch import LaunchContext
    from launch.actions import OpaqueFunction

    description = module.generate_launch_description()
    context = LaunchContext()
    configurations = {name: default for name, default in ARGUMENTS.items()}
    configurations.update(params_file=str(PARAMS_FILE), rviz_config=str(RVIZ_FILE))
    configurations.update(values)
    context.launch_configurations.update(configurations)
    entities = list(_walk_entities(description.entities))
    push = [e for e in entities if type(e).__name__ in ('PushROSNamespace', 'PushRosNamespace')]
    assert len(push) == 1
    push[0].execute(context)
    (opaque,) = [e for e in entities if isinstance(e, OpaqueFunction)]
    return context, opaque.execute(context)


def test_generate_launch_description_declares_all_arguments():
    module = _load_launch_module()
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import LifecycleNode, Node

    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    by_name = {a.name: a for a in declared}
    assert set(by_name) == set(ARGUMENTS)
    assert {a.name for a in description.get_launch_arguments()} == set(ARGUMENTS)
    for name, argument in by_name.items():
        assert argument.description and argument.description.strip(), name
        assert argument.description != 'no description given', name
    for name in BOOLEAN_ARGS:
        assert by_name[name].choices == ['true', 'false'], name
    for name in OPTIONAL_BOOLEAN_ARGS:
        assert by_name[name].choices == ['', 'true', 'false'], name
    assert by_name['log_level'].choices == LOG_LEVELS
    _, actions = _setup_in_context(module, {'rviz': 'false'})
    nodes = [a for a in actions if isinstance(a, Node)]
    assert [(n.node_package, n.node_executable) for n in nodes] == [(PACKAGE, 'segmif_node')]
    assert isinstance(nodes[0], LifecycleNode)


def test_substitutions_in_a_launch_context():
    """Namespace, remappings, log level and parameter overrides as the node would get them."""
    module = _load_launch_module()
    from launch.substitutions import LocalSubstitution
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    values = {
        'namespace': 'front', 'checkpoint': '', 'device': 'cuda:1', 'use_sim_time': 'true',
        'visible_topic': '/camera/color/image_raw', 'thermal_topic': 'flir/image_raw',
        'rviz': 'false', 'log_level': 'debug',
    }
    context, actions = _setup_in_context(module, values)
    node = next(a for a in actions if isinstance(a, Node) and a.node_package == PACKAGE)
    node._perform_substitutions(context)  # what Node.execute() does before starting the process

    assert node.expanded_node_namespace == '/front'
    assert node.node_name == '/front/segmif_node'
    assert node.expanded_remapping_rules == [
        ('visible/image', '/camera/color/image_raw'), ('thermal/image', 'flir/image_raw'),
        ('visible/image/compressed', '/camera/color/image_raw/compressed'),
        ('thermal/image/compressed', 'flir/image_raw/compressed'),
        ('visible/camera_info', '/camera/color/camera_info')]
    args = ['<local>' if any(isinstance(s, LocalSubstitution) for s in part)
            else perform_substitutions(context, part) for part in node.cmd[1:]]
    assert args[:3] == ['--ros-args', '--log-level', 'front.segmif_node:=debug']
    files = [args[i + 1] for i, a in enumerate(args) if a == '--params-file']
    assert files[0] == str(PARAMS_FILE)
    overrides = yaml.safe_load(Path(files[-1]).read_text())
    assert overrides == {'/front/segmif_node': {'ros__parameters': {
        'device': 'cuda:1', 'use_sim_time': True, 'autostart': True}}}  # checkpoint not given


def _processes_with(marker):
    """pids of this host's processes whose command line contains marker."""
    pids = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / 'cmdline').read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _run_failing_launch(launch_arguments):
    """LaunchService.run() of the launch file, expected to fail: (return code, processes of the
    launch still running afterwards). A process launch started is found by its unique namespace:
    launch's own ProcessStarted event is not emitted for a process spawned while the service is
    already stopping, which is how the orphan of defect 5 came about."""
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    namespace = f'segmif_failing_launch_{os.getpid()}_{time.monotonic_ns()}'
    # explicit files: the defaults (FindPackageShare) would fail where segmif_ros is not installed
    launch_arguments = dict({'params_file': str(PARAMS_FILE), 'rviz_config': str(RVIZ_FILE),
                             'namespace': namespace}, **launch_arguments)
    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments=launch_arguments.items())]))
    # a launch that does not fail keeps running: stop it, so that the test fails, not hangs
    stopper = threading.Timer(30.0, service.shutdown)
    stopper.start()
    try:
        code = service.run()
    finally:
        stopper.cancel()
    time.sleep(2.0)  # a process spawned at the last moment is visible by now
    left = _processes_with(f'__ns:=/{namespace}')
    for pid in left:  # do not leave them to the next test
        os.kill(pid, 9)
    return code, left


def test_launch_fails_without_starting_anything_on_a_missing_params_file(tmp_path):
    _load_launch_module()
    code, left = _run_failing_launch({'params_file': str(tmp_path / 'missing.yaml')})
    assert code == 1
    assert left == []


def test_launch_fails_without_starting_anything_when_rviz2_is_missing():
    """Defect 5: rviz:=true without RViz2 fails the launch and leaves no segmif_node behind."""
    _load_launch_module()
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix('rviz2')
        pytest.skip('rviz2 is installed here')
    except (PackageNotFoundError, KeyError, ValueError):
        pass
    try:
        get_package_prefix(PACKAGE)
    except (PackageNotFoundError, KeyError, ValueError):
        pytest.skip(f'{PACKAGE} is not installed in AMENT_PREFIX_PATH (run `make test`)')
    code, left = _run_failing_launch({'rviz': 'true'})
    assert code == 1
    assert left == [], 'segmif_node left running after the failed launch'


def test_launch_service_starts_the_node(tiny_checkpoint):
    """A LaunchService runs the launch file; the node comes up as configured in a live graph."""
    _load_launch_module()
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix(PACKAGE)
    except (PackageNotFoundError, KeyError, ValueError):
        pytest.skip(f'{PACKAGE} is not installed in AMENT_PREFIX_PATH (run `make test`)')
    import rclpy
    from rclpy.parameter import parameter_value_to_python
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rcl_interfaces.srv import GetParameters
    from segmif_ros.msg import LabelInfo

    ns = f'segmif_launch_test_{os.getpid()}'
    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={
            'namespace': ns, 'checkpoint': str(tiny_checkpoint), 'device': 'cpu',
            'visible_topic': f'/{ns}_camera/image', 'thermal_topic': 'ir/image',
            'rviz': 'false', 'log_level': 'info',
        }.items())]))
    launch_done = threading.Event()
    result = {}

    def check():
        context = rclpy.Context()
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = rclpy.create_node('segmif_launch_test_probe', context=context)
            executor = rclpy.executors.SingleThreadedExecutor(context=context)
            executor.add_node(node)
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            node.create_subscription(LabelInfo, f'/{ns}/segmentation/label_info',
                                     lambda m: result.setdefault('label_info', m), latched)
            deadline = time.monotonic() + 120.0  # torch import and model construction
            while 'label_info' not in result and time.monotonic() < deadline and \
                    not launch_done.is_set():
                executor.spin_once(timeout_sec=0.1)

            def graph():  # discovery of the node's subscriptions may lag behind its first message
                result['nodes'] = node.get_node_names_and_namespaces()
                result['visible_subscribers'] = node.count_subscribers(f'/{ns}_camera/image')
                result['thermal_subscribers'] = node.count_subscribers(f'/{ns}/ir/image')
                return ('segmif_node', f'/{ns}') in result['nodes'] and \
                    result['visible_subscribers'] and result['thermal_subscribers']

            deadline = time.monotonic() + 15.0
            while not graph() and time.monotonic() < deadline and not launch_done.is_set():
                executor.spin_once(timeout_sec=0.1)
            client = node.create_client(GetParameters, f'/{ns}/segmif_node/get_parameters')
            if client.wait_for_service(timeout_sec=10.0):
                names = ['checkpoint', 'device', 'use_sim_time', 'input_qos']
                future = client.call_async(GetParameters.Request(names=names))
                executor.spin_until_future_complete(future, timeout_sec=10.0)
                if future.done():
                    result['parameters'] = dict(zip(names, (
                        parameter_value_to_python(v) for v in future.result().values)))
            executor.shutdown()
            node.destroy_node()
        finally:
            rclpy.shutdown(context=context)
            while not launch_done.is_set():  # also if the service had not started running yet
                service.shutdown()
                launch_done.wait(0.5)

    checker = threading.Thread(target=check, daemon=True)
    checker.start()
    try:
        service.run()  # the main thread: LaunchService installs signal handlers
    finally:
        launch_done.set()
        checker.join(timeout=60.0)
    assert 'label_info' in result, 'segmif_node started by the launch file published no LabelInfo'
    assert ('segmif_node', f'/{ns}') in result['nodes']
    assert result['visible_subscribers'] >= 1, 'visible_topic remapping (absolute) not applied'
    assert result['thermal_subscribers'] >= 1, 'thermal_topic remapping (relative) not applied'
    assert result.get('parameters') == {'checkpoint': str(tiny_checkpoint), 'device': 'cpu',
                                        'use_sim_time': False, 'input_qos': 'sensor_data'}
