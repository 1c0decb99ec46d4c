"""launch/segmif.launch.py, config/segmif.rviz and config/segmif.yaml.

Two groups of tests:

* Static ones that need neither ``launch`` nor ``launch_ros`` (not installable from a package
  registry, so absent from the project venv): the launch file is read with ``ast`` (declared
  arguments, descriptions, choices, the node, its parameters and remappings), the RViz2 config and
  the parameter file with YAML, and the parameter file is compared with the parameters the node
  declares (``segmif_ros.node.parameters.PARAMETERS``).
* Ones that run where ``launch`` and ``launch_ros`` are importable (a sourced ROS 2 install;
  skipped otherwise): generate_launch_description() is loaded and inspected, its substitutions
  are evaluated in a LaunchContext, and a LaunchService starts segmif_node from it and checks the
  running node (namespace, remappings, parameters) in a live graph.
"""
import ast
import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'segmif.launch.py'
RVIZ_FILE = REPO / 'config' / 'segmif.rviz'
PARAMS_FILE = REPO / 'config' / 'segmif.yaml'
NODE_DIR = REPO / 'segmif_ros' / 'node'
PACKAGE = 'segmif_ros'

BOOLEAN_ARGS = ('use_sim_time', 'rviz')
LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'fatal']
# argument name -> default value (None: a substitution, checked separately)
ARGUMENTS = {
    'namespace': '',
    'params_file': None,
    'checkpoint': '',
    'device': 'cpu',
    'use_sim_time': 'false',
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

    def calls_to(self, name):
        return [c for c in self.calls if _call_name(c) == name]

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
        return [c for c in self.calls_to('Node')
                if self.keyword(c, 'package') is not None and
                self.value(self.keyword(c, 'package')) == package]


@pytest.fixture(scope='module')
def source():
    assert LAUNCH_FILE.is_file(), LAUNCH_FILE
    return LaunchSource(LAUNCH_FILE)


@pytest.fixture(scope='module')
def segmif_node_call(source):
    calls = source.nodes(PACKAGE)
    assert len(calls) == 1, 'expected exactly one Node of package segmif_ros'
    return calls[0]


def test_module_docstring_and_entry_point(source):
    doc = ast.get_docstring(source.tree)
    assert doc and 'ros2 launch segmif_ros segmif.launch.py' in doc
    functions = [s.name for s in source.tree.body if isinstance(s, ast.FunctionDef)]
    assert 'generate_launch_description' in functions


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
    assert source.value(source.keyword(declared['log_level'], 'choices')) == LOG_LEVELS
    for name, call in declared.items():
        choices = source.keyword(call, 'choices')
        if choices is not None and ARGUMENTS[name] is not None:
            assert ARGUMENTS[name] in source.value(choices), f'{name}: default not a choice'


def test_every_argument_is_used(source):
    assert source.launch_configurations() == set(ARGUMENTS)


def test_segmif_node(source, segmif_node_call):
    call = segmif_node_call
    assert source.value(source.keyword(call, 'executable')) == 'segmif_node'
    assert source.value(source.keyword(call, 'name')) == 'segmif_node'
    assert source.value(source.keyword(call, 'output')) == 'screen'
    args = source.keyword(call, 'arguments')
    assert args is not None and isinstance(args, ast.List)
    assert ast.unparse(args) == "['--ros-args', '--log-level', log_level]"


def test_segmif_node_remappings(source, segmif_node_call):
    remaps = source.keyword(segmif_node_call, 'remappings')
    assert isinstance(remaps, ast.List)
    pairs = {}
    for rule in remaps.elts:
        assert isinstance(rule, ast.Tuple) and len(rule.elts) == 2
        pairs[source.value(rule.elts[0])] = ast.unparse(rule.elts[1])
    assert pairs == {'visible/image': 'visible_topic', 'thermal/image': 'thermal_topic'}
    # the sources are the node's subscription topics
    node_topics = _node_topics('create_subscription')
    assert set(pairs) == node_topics


def test_segmif_node_parameters(source, segmif_node_call):
    params = source.keyword(segmif_node_call, 'parameters')
    assert isinstance(params, ast.List) and len(params.elts) == 2
    assert ast.unparse(params.elts[0]) == 'params_file'  # the file first, overrides after it
    overrides = params.elts[1]
    assert isinstance(overrides, ast.Dict)
    by_name = {source.value(k): v for k, v in zip(overrides.keys, overrides.values)}
    assert set(by_name) == {'use_sim_time', 'device', 'checkpoint'}
    expected_types = {'use_sim_time': 'bool', 'device': 'str', 'checkpoint': 'str'}
    for name, value in by_name.items():
        # ParameterValue(..., value_type=...): '' must stay a string, 'false' become a bool
        assert isinstance(value, ast.Call) and _call_name(value) == 'ParameterValue', name
        assert ast.unparse(source.keyword(value, 'value_type')) == expected_types[name], name


def test_launch_defaults_equal_node_defaults(source):
    """checkpoint and device override params_file, so their defaults must be the node's."""
    parameters = _node_parameters()
    declared = source.declared_arguments()
    for name in ('checkpoint', 'device'):
        assert source.value(source.keyword(declared[name], 'default_value')) == \
            parameters[name][0], name


def test_rviz_node(source):
    calls = source.nodes('rviz2')
    assert len(calls) == 1
    call = calls[0]
    assert source.value(source.keyword(call, 'executable')) == 'rviz2'
    assert ast.unparse(source.keyword(call, 'arguments')) == "['-d', rviz_config]"
    condition = source.keyword(call, 'condition')
    assert isinstance(condition, ast.Call) and _call_name(condition) == 'IfCondition'
    assert ast.unparse(condition.args[0]) == 'rviz'
    assert 'use_sim_time' in ast.unparse(source.keyword(call, 'parameters'))


def test_namespace_is_pushed_for_both_nodes(source, segmif_node_call):
    """RViz2's relative topics only match the node's outputs if both share the namespace."""
    groups = source.calls_to('GroupAction')
    assert len(groups) == 1
    group_src = ast.unparse(groups[0])
    push = [c for c in source.calls if _call_name(c) in ('PushROSNamespace', 'PushRosNamespace')]
    assert len(push) == 1 and ast.unparse(push[0].args[0]) == 'namespace'
    assert ast.unparse(push[0]) in group_src
    # the namespace is pushed, not also given to the nodes (that would nest it twice)
    assert source.keyword(segmif_node_call, 'namespace') is None
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
    assert ast.unparse(source.keyword(call, 'condition')) == 'IfCondition(fastdds_shm_large)'
    group = source.calls_to('GroupAction')[0].args[0]
    order = [ast.unparse(e) for e in group.elts]
    assert order.index('shm_profile') < order.index('segmif_node') < order.index('rviz_node')


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


def test_generate_launch_description_declares_all_arguments():
    module = _load_launch_module()
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

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
    assert by_name['log_level'].choices == LOG_LEVELS
    nodes = [e for e in _walk_entities(description.entities) if isinstance(e, Node)]
    assert sorted((n.node_package, n.node_executable) for n in nodes) == [
        ('rviz2', 'rviz2'), (PACKAGE, 'segmif_node')]


def test_substitutions_in_a_launch_context(tmp_path):
    """Namespace, remappings and parameter overrides as the node would get them."""
    module = _load_launch_module()
    from launch import LaunchContext
    from launch.substitutions import LocalSubstitution
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    description = module.generate_launch_description()
    context = LaunchContext()
    values = {
        'namespace': 'front', 'params_file': str(PARAMS_FILE), 'checkpoint': '',
        'device': 'cuda:1',
        'use_sim_time': 'true', 'visible_topic': '/camera/color/image_raw',
        'thermal_topic': 'flir/image_raw', 'rviz': 'false', 'rviz_config': str(RVIZ_FILE),
        'log_level': 'debug',
    }
    context.launch_configurations.update(values)
    entities = list(_walk_entities(description.entities))
    push = [e for e in entities if type(e).__name__ in ('PushROSNamespace', 'PushRosNamespace')]
    assert len(push) == 1
    push[0].execute(context)
    node = next(e for e in entities if isinstance(e, Node) and e.node_package == PACKAGE)
    node._perform_substitutions(context)  # what Node.execute() does before starting the process

    assert node.expanded_node_namespace == '/front'
    assert node.node_name == '/front/segmif_node'
    assert node.expanded_remapping_rules == [('visible/image', '/camera/color/image_raw'),
                                             ('thermal/image', 'flir/image_raw')]
    args = ['<local>' if any(isinstance(s, LocalSubstitution) for s in part)
            else perform_substitutions(context, part) for part in node.cmd[1:]]
    assert args[:3] == ['--ros-args', '--log-level', 'debug']
    files = [args[i + 1] for i, a in enumerate(args) if a == '--params-file']
    assert files[0] == str(PARAMS_FILE)
    overrides = yaml.safe_load(Path(files[-1]).read_text())
    (section,) = overrides.values()
    assert section['ros__parameters'] == {'use_sim_time': True, 'device': 'cuda:1',
                                          'checkpoint': ''}


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
