"""Launch segmif_node (SegMiF visible + thermal fusion and segmentation), optionally RViz2.

Usage (a built and sourced workspace that holds segmif_ros)::

    ros2 launch segmif_ros segmif.launch.py
    ros2 launch segmif_ros segmif.launch.py namespace:=front \\
        visible_topic:=/camera/color/image_raw thermal_topic:=/flir/image_raw device:=cuda
    ros2 launch segmif_ros segmif.launch.py params_file:=/path/to/my_segmif.yaml rviz:=true
    ros2 launch segmif_ros segmif.launch.py autostart:=false   # configure/activate it yourself
    ros2 launch segmif_ros segmif.launch.py --show-args    # every argument with its description

Arguments:
    namespace       ROS namespace of the node (and of RViz2), e.g. ``front``. The node's topics are
                    relative, so its outputs become ``/<namespace>/fused/image``,
                    ``/<namespace>/segmentation/{labels,color,info,label_info}``.
    params_file     Parameter file of segmif_node (default: share/segmif_ros/config/segmif.yaml,
                    which documents every parameter). It must exist. Sections that apply: ``/**``
                    and ``/**/segmif_node`` (any namespace), ``/<namespace>/segmif_node``, and a
                    ``segmif_node:`` section, which this launch file rewrites to the node's fully
                    qualified name so that it also applies under ``namespace``. A file with no
                    section for the node fails the launch.
    checkpoint      Model checkpoint (.pt); empty = not given (the file's ``checkpoint``, else the
                    default one shipped with the package).
    device          Torch device: ``cpu``, ``cuda`` or ``cuda:N``; empty = not given (the file's
                    ``device``, else ``cpu``).
    use_sim_time    ``true`` when replaying a bag with ``--clock``; empty = not given (the file's
                    ``use_sim_time``, else false). RViz2 gets the same value.
    autostart       ``true`` (default): segmif_node (a lifecycle node) configures and activates
                    itself; ``false``: it waits unconfigured for ``ros2 lifecycle set`` or a
                    lifecycle manager.
    visible_topic   Topic the visible camera publishes (remaps the node's ``visible/image``; its
                    ``/compressed`` transport and its CameraInfo, the sibling ``camera_info``
                    topic by image_transport's convention: ``/camera/color/image_raw`` ->
                    ``/camera/color/camera_info``).
    thermal_topic   Topic the thermal camera publishes (remaps the node's ``thermal/image``).
    rviz            ``true`` starts RViz2 with ``rviz_config``, in the same namespace.
    rviz_config     RViz2 configuration (default: share/segmif_ros/config/segmif.rviz).
    log_level       Logging level of segmif_node's logger (``<namespace>.segmif_node`` and its
                    children): debug, info, warn, error or fatal. rcl/rmw stay at info.
    fastdds_shm_large  ``true`` sets FASTDDS_DEFAULT_PROFILES_FILE to
                    share/segmif_ros/config/fastdds_shm_large.xml for the node and RViz2: Fast DDS
                    over shared memory only with a 32 MiB segment, without which best-effort
                    640x480 frames between processes on one host are mostly lost. Every other
                    process of the graph (camera drivers, bag players) needs the same profile.

Parameter precedence: ``checkpoint``, ``device`` and ``use_sim_time`` override ``params_file`` only
when they are given (non-empty); ``autostart`` is always passed (default true) and so always
overrides the file. The overrides go in a second parameter file under a node name that no section
of ``params_file`` uses, so they come last in rclpy's order (where sections that apply are merged
in the order their names first appear, the later one winning) whatever the order of
``params_file``'s sections.

Failure: everything is checked before anything starts (``params_file`` exists and has a section
for the node; with ``rviz:=true`` RViz2 is installed and ``rviz_config`` exists), so a failed
launch leaves no process behind. If segmif_node exits on its own (for example a bad checkpoint at
start-up), the launch stops RViz2 and ends, with exit code 1 when the node failed.

Relative ``visible_topic`` / ``thermal_topic`` values are resolved in ``namespace``; give absolute
names (leading ``/``) for camera topics outside it.
"""
import importlib.util
import os
import signal

from segmif_ros.node.topics import camera_info_topic  # the node's own rule (no rclpy import)
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, GroupAction, OpaqueFunction,
                            RegisterEventHandler, SetEnvironmentVariable, Shutdown)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import ExecutableInPackage, FindPackageShare

try:  # launch_ros >= 0.26 (Jazzy); PushRosNamespace remains as an alias there
    from launch_ros.actions import PushROSNamespace
except ImportError:  # Humble and older
    from launch_ros.actions import PushRosNamespace as PushROSNamespace

PACKAGE = 'segmif_ros'
NODE_NAME = 'segmif_node'
BOOLEAN = ['true', 'false']
OPTIONAL_BOOLEAN = ['', 'true', 'false']  # '' = not given: the parameter file decides
LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'fatal']
# exit codes of segmif_node that are a normal end (Ctrl-C reaches the node and launch together)
NORMAL_EXIT_CODES = [0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT,
                     128 + signal.SIGTERM]


def _load_beside(name):
    """The module ``name``.py installed beside this launch file (share/segmif_ros/launch/)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + '.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the parameter files: checks of params_file, its namespace rewrite, the launch overrides
# (launch/segmif_params.py; test/test_launch_params.py)
segmif_params = _load_beside('segmif_params')


# ------------------------------------------------------------------------------------------------
# Pure helpers (standard library only; test/test_launch.py runs them without launch)
# ------------------------------------------------------------------------------------------------
def node_logger_name(fqn):
    """rcl's logger name of a node: the FQN without the leading '/', '/' replaced by '.'."""
    return fqn.lstrip('/').replace('/', '.')


def log_level_arguments(fqn, level):
    """ROS arguments that set the level of the node's logger only (not rcl's or rmw's)."""
    return ['--ros-args', '--log-level', f'{node_logger_name(fqn)}:={level}']


def input_remappings(visible_topic, thermal_topic):
    """Remappings of the node's inputs to the camera topics (performed launch arguments): each
    image topic, its compressed transport (image_transport's ``<image topic>/compressed``, for
    ``input_transport: compressed``) and the visible camera's CameraInfo, the sibling of its
    image topic (``/camera/color/image_raw`` -> ``/camera/color/camera_info``)."""
    return [('visible/image', visible_topic), ('thermal/image', thermal_topic),
            ('visible/image/compressed', visible_topic + '/compressed'),
            ('thermal/image/compressed', thermal_topic + '/compressed'),
            ('visible/camera_info', camera_info_topic(visible_topic))]


# ------------------------------------------------------------------------------------------------
# Launch actions
# ------------------------------------------------------------------------------------------------
def _on_segmif_node_exit(event, context):
    """segmif_node ended on its own: stop the rest (RViz2); a failure fails the launch."""
    if context.is_shutdown:
        return None
    if event.returncode in NORMAL_EXIT_CODES:
        return [Shutdown(reason=f'{NODE_NAME} exited')]
    raise RuntimeError(f'{NODE_NAME} exited with code {event.returncode}; stopping the launch')


def _launch_setup(context):
    """Checks everything, then returns the actions that start processes (none on error)."""
    values = {
        'params_file': LaunchConfiguration('params_file').perform(context),
        'checkpoint': LaunchConfiguration('checkpoint').perform(context),
        'device': LaunchConfiguration('device').perform(context),
        'use_sim_time': LaunchConfiguration('use_sim_time').perform(context),
        'autostart': LaunchConfiguration('autostart').perform(context),
        'rviz': LaunchConfiguration('rviz').perform(context),
        'rviz_config': LaunchConfiguration('rviz_config').perform(context),
        'log_level': LaunchConfiguration('log_level').perform(context),
        'visible_topic': LaunchConfiguration('visible_topic').perform(context),
        'thermal_topic': LaunchConfiguration('thermal_topic').perform(context),
    }
    fqn = segmif_params.node_fqn(context.launch_configurations.get('ros_namespace'))
    params_path, overrides_path, use_sim_time = segmif_params.node_parameter_files(
        values['params_file'], fqn, values['checkpoint'], values['device'],
        values['use_sim_time'], values['autostart'])

    start_rviz = values['rviz'] == 'true'
    if start_rviz:
        try:  # the substitution Node uses to find it, so the check and the start agree
            ExecutableInPackage(package='rviz2', executable='rviz2').perform(context)
        except Exception as err:  # PackageNotFoundError, SubstitutionFailure
            raise RuntimeError(
                f'rviz:=true, but RViz2 cannot be started ({err}); install it '
                '(apt install ros-$ROS_DISTRO-rviz2) or launch with rviz:=false '
                '(nothing was started)') from None
        if not os.path.isfile(values['rviz_config']):
            raise RuntimeError(f"rviz_config '{values['rviz_config']}' does not exist "
                               '(nothing was started)')

    segmif_node = LifecycleNode(
        package=PACKAGE,
        executable='segmif_node',
        name=NODE_NAME,
        namespace='',  # relative: the namespace PushROSNamespace pushed, not nested twice
        output='screen',
        parameters=[params_path, overrides_path],  # the file first, the overrides after it
        remappings=input_remappings(values['visible_topic'], values['thermal_topic']),
        arguments=log_level_arguments(fqn, values['log_level']),
    )
    actions = [
        RegisterEventHandler(OnProcessExit(target_action=segmif_node,
                                           on_exit=_on_segmif_node_exit)),
        segmif_node,
    ]
    if start_rviz:
        actions.append(Node(
            package='rviz2',
            executable='rviz2',
            output='screen',
            arguments=['-d', values['rviz_config']],
            parameters=[{'use_sim_time': use_sim_time}],  # a bool: the node's resolved value
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='ROS namespace for segmif_node and RViz2 (e.g. "front"); the node\'s '
                        'relative topics (visible/image, thermal/image, fused/image, '
                        'segmentation/...) are resolved in it. Empty = the root namespace.'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), 'config',
                                                'segmif.yaml']),
            description='Full path to the segmif_node parameter file; it must exist. Sections '
                        'that apply in any namespace: "/**", "/**/segmif_node" and '
                        '"segmif_node" (renamed to the node\'s full name by this launch file); '
                        'also "/<namespace>/segmif_node". The default documents every '
                        'parameter.'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description='Path to the model checkpoint (.pt). Overrides "checkpoint" in '
                        'params_file when given; empty = the file\'s, else the default '
                        'checkpoint shipped with the package.'),
        DeclareLaunchArgument(
            'device', default_value='',
            description='Torch device for inference: cpu, cuda or cuda:N (e.g. cuda:1). '
                        'Overrides "device" in params_file when given; empty = the file\'s, '
                        'else cpu.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='', choices=OPTIONAL_BOOLEAN,
            description='Use the /clock topic (bag replay with --clock) instead of the system '
                        'clock, for segmif_node and RViz2. Overrides "use_sim_time" in '
                        'params_file when given; empty = the file\'s, else false.'),
        DeclareLaunchArgument(
            'autostart', default_value='true', choices=BOOLEAN,
            description='true: segmif_node (a lifecycle node) configures and activates itself; '
                        'false: it stays unconfigured until "ros2 lifecycle set" or a lifecycle '
                        'manager moves it. Always overrides "autostart" in params_file.'),
        DeclareLaunchArgument(
            'visible_topic', default_value='visible/image',
            description='Visible camera image topic (sensor_msgs/Image: rgb8, bgr8, mono8), '
                        'remapped to the node\'s visible/image. Relative names are resolved in '
                        'namespace.'),
        DeclareLaunchArgument(
            'thermal_topic', default_value='thermal/image',
            description='Thermal camera image topic (sensor_msgs/Image: mono8, mono16), '
                        'remapped to the node\'s thermal/image. Relative names are resolved in '
                        'namespace.'),
        DeclareLaunchArgument(
            'rviz', default_value='false', choices=BOOLEAN,
            description='Start RViz2 showing the fused image and the colour labels. When RViz2 '
                        'is not installed the launch fails before starting anything.'),
        DeclareLaunchArgument(
            'rviz_config',
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), 'config',
                                                'segmif.rviz']),
            description='Full path to the RViz2 configuration used when rviz is true.'),
        DeclareLaunchArgument(
            'log_level', default_value='info', choices=LOG_LEVELS,
            description='Logging level of segmif_node\'s logger (<namespace>.segmif_node and its '
                        'children); the rest of the process (rcl, rmw) stays at info.'),
        DeclareLaunchArgument(
            'fastdds_shm_large', default_value='false', choices=BOOLEAN,
            description='Use the shared-memory-only Fast DDS profile with a 32 MiB segment '
                        '(config/fastdds_shm_large.xml) for the node and RViz2; needed for '
                        'best-effort 640x480 images between processes on one host. The other '
                        'processes of the graph need FASTDDS_DEFAULT_PROFILES_FILE set to it '
                        'too.'),
    ]

    shm_profile = SetEnvironmentVariable(
        'FASTDDS_DEFAULT_PROFILES_FILE',
        PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'fastdds_shm_large.xml']),
        condition=IfCondition(LaunchConfiguration('fastdds_shm_large')))

    # The namespace is pushed for both nodes, so that RViz2's relative topics (fused/image,
    # segmentation/color) name the node's outputs. The group scopes it: launch files that
    # include this one keep their own namespace. The nodes are created by _launch_setup, after
    # the checks, in the pushed namespace and with the profile's environment.
    group = GroupAction([
        PushROSNamespace(LaunchConfiguration('namespace')),
        shm_profile,
        OpaqueFunction(function=_launch_setup),
    ])

    return LaunchDescription(arguments + [group])
