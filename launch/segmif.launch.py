"""Launch segmif_node (SegMiF visible + thermal fusion and segmentation), optionally RViz2.

Usage (a built and sourced workspace that holds segmif_ros)::

    ros2 launch segmif_ros segmif.launch.py
    ros2 launch segmif_ros segmif.launch.py namespace:=front \\
        visible_topic:=/camera/color/image_raw thermal_topic:=/flir/image_raw device:=cuda
    ros2 launch segmif_ros segmif.launch.py params_file:=/path/to/my_segmif.yaml rviz:=true
    ros2 launch segmif_ros segmif.launch.py --show-args    # every argument with its description

Arguments:
    namespace       ROS namespace of the node (and of RViz2), e.g. ``front``. The node's topics are
                    relative, so its outputs become ``/<namespace>/fused/image``,
                    ``/<namespace>/segmentation/{labels,color,info,label_info}``.
    params_file     Parameter file of segmif_node (default: share/segmif_ros/config/segmif.yaml,
                    which documents every parameter). Its ``/**`` section applies in any namespace.
    checkpoint      Model checkpoint (.pt); empty = the default one shipped with the package.
    device          Torch device: ``cpu``, ``cuda`` or ``cuda:N``.
    use_sim_time    ``true`` when replaying a bag with ``--clock``.
    visible_topic   Topic the visible camera publishes (remaps the node's ``visible/image``).
    thermal_topic   Topic the thermal camera publishes (remaps the node's ``thermal/image``).
    rviz            ``true`` starts RViz2 with ``rviz_config``, in the same namespace.
    rviz_config     RViz2 configuration (default: share/segmif_ros/config/segmif.rviz).
    log_level       Logging level of segmif_node: debug, info, warn, error or fatal.
    fastdds_shm_large  ``true`` sets FASTDDS_DEFAULT_PROFILES_FILE to
                    share/segmif_ros/config/fastdds_shm_large.xml for the node and RViz2: Fast DDS
                    over shared memory only with a 32 MiB segment, without which best-effort
                    640x480 frames between processes on one host are mostly lost. Every other
                    process of the graph (camera drivers, bag players) needs the same profile.

``checkpoint``, ``device`` and ``use_sim_time`` are passed after ``params_file`` and therefore
override the values in it (``checkpoint:=''``, the default, selects the shipped checkpoint even if
the parameter file names another one). Relative ``visible_topic`` / ``thermal_topic`` values are
resolved in ``namespace``; give absolute names (leading ``/``) for camera topics outside it.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

try:  # launch_ros >= 0.26 (Jazzy); PushRosNamespace remains as an alias there
    from launch_ros.actions import PushROSNamespace
except ImportError:  # Humble and older
    from launch_ros.actions import PushRosNamespace as PushROSNamespace

PACKAGE = 'segmif_ros'
BOOLEAN = ['true', 'false']
LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'fatal']


def generate_launch_description() -> LaunchDescription:
    namespace = LaunchConfiguration('namespace')
    params_file = LaunchConfiguration('params_file')
    checkpoint = LaunchConfiguration('checkpoint')
    device = LaunchConfiguration('device')
    use_sim_time = LaunchConfiguration('use_sim_time')
    visible_topic = LaunchConfiguration('visible_topic')
    thermal_topic = LaunchConfiguration('thermal_topic')
    rviz = LaunchConfiguration('rviz')
    rviz_config = LaunchConfiguration('rviz_config')
    log_level = LaunchConfiguration('log_level')
    fastdds_shm_large = LaunchConfiguration('fastdds_shm_large')

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
            description='Full path to the segmif_node parameter file (YAML with a /** or '
                        'segmif_node section); the default documents every parameter.'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description='Path to the model checkpoint (.pt); empty = the default checkpoint '
                        'shipped with the package. Overrides "checkpoint" in params_file.'),
        DeclareLaunchArgument(
            'device', default_value='cpu',
            description='Torch device for inference: cpu, cuda or cuda:N (e.g. cuda:1). '
                        'Overrides "device" in params_file.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=BOOLEAN,
            description='Use the /clock topic (bag replay with --clock) instead of the system '
                        'clock, for segmif_node and RViz2.'),
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
            description='Start RViz2 showing the fused image and the colour labels.'),
        DeclareLaunchArgument(
            'rviz_config',
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), 'config',
                                                'segmif.rviz']),
            description='Full path to the RViz2 configuration used when rviz is true.'),
        DeclareLaunchArgument(
            'log_level', default_value='info', choices=LOG_LEVELS,
            description='Logging level of segmif_node.'),
        DeclareLaunchArgument(
            'fastdds_shm_large', default_value='false', choices=BOOLEAN,
            description='Use the shared-memory-only Fast DDS profile with a 32 MiB segment '
                        '(config/fastdds_shm_large.xml) for the node and RViz2; needed for '
                        'best-effort 640x480 images between processes on one host. The other '
                        'processes of the graph need FASTDDS_DEFAULT_PROFILES_FILE set to it too.'),
    ]

    shm_profile = SetEnvironmentVariable(
        'FASTDDS_DEFAULT_PROFILES_FILE',
        PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'fastdds_shm_large.xml']),
        condition=IfCondition(fastdds_shm_large))

    segmif_node = Node(
        package=PACKAGE,
        executable='segmif_node',
        name='segmif_node',
        output='screen',
        parameters=[
            params_file,
            {
                'use_sim_time': ParameterValue(use_sim_time, value_type=bool),
                'device': ParameterValue(device, value_type=str),
                # value_type=str: an empty string stays a string parameter
                'checkpoint': ParameterValue(checkpoint, value_type=str),
            },
        ],
        remappings=[
            ('visible/image', visible_topic),
            ('thermal/image', thermal_topic),
        ],
        arguments=['--ros-args', '--log-level', log_level],
    )

    rviz_node = Node(
        package='rviz2',
        executable='rviz2',
        output='screen',
        arguments=['-d', rviz_config],
        parameters=[{'use_sim_time': ParameterValue(use_sim_time, value_type=bool)}],
        condition=IfCondition(rviz),
    )

    # The namespace is pushed for both nodes, so that RViz2's relative topics (fused/image,
    # segmentation/color) name the node's outputs. The group scopes it: launch files that
    # include this one keep their own namespace.
    group = GroupAction([
        PushROSNamespace(namespace),
        shm_profile,
        segmif_node,
        rviz_node,
    ])

    return LaunchDescription(arguments + [group])
