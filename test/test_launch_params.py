"""launch/segmif_params.py: the parameter files segmif.launch.py gives segmif_node (standard
library + PyYAML; no launch, launch_ros or rclpy needed). test/test_launch.py runs the launch
file with these files, and with rclpy checks what a node started with them gets."""
import importlib.util
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODULE_FILE = REPO / 'launch' / 'segmif_params.py'
PARAMS_FILE = REPO / 'config' / 'segmif.yaml'


@pytest.fixture(scope='module')
def m():
    spec = importlib.util.spec_from_file_location('segmif_params_under_test', MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """tempfile's folder (where the launch writes its parameter files) for this test only."""
    folder = tmp_path / 'tmp'
    folder.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(folder))
    return folder


def test_importable_without_launch_and_rclpy():
    code = textwrap.dedent(f'''
        import importlib.util, sys
        for name in ('launch', 'launch_ros', 'rclpy'):
            sys.modules[name] = None  # any import of them fails
        spec = importlib.util.spec_from_file_location('p', {str(MODULE_FILE)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(module.node_fqn('/cam'))
        ''')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '/cam/segmif_node'


def test_names_sections_and_overrides(m):
    assert m.node_fqn(None) == m.node_fqn('/') == '/segmif_node'
    assert m.node_fqn('/cam') == '/cam/segmif_node'
    assert m.node_fqn('/robot/front/') == '/robot/front/segmif_node'
    fqn = '/cam/segmif_node'
    for section, applies in (('/**', True), ('/**/segmif_node', True), ('/cam/segmif_node', True),
                             ('/cam/*', True), ('/*/segmif_node', True), ('/*', False),
                             ('segmif_node', False), ('/segmif_node', False),
                             ('/rear/segmif_node', False), ('/**/other', False)):
        assert m.section_applies(section, fqn) is applies, section
    assert m.section_applies('segmif_node', '/segmif_node')
    data = {'/**': {'ros__parameters': {'a': 1, 'b': 1}},
            'cam': {'segmif_node': {'ros__parameters': {'b': 2}}},
            'rear': {'segmif_node': {'ros__parameters': {'b': 3}}}}
    assert [n for n, _ in m.parameter_sections(data)] == \
        ['/**', '/cam/segmif_node', '/rear/segmif_node']
    assert m.applicable_parameters(data, fqn) == {'a': 1, 'b': 2}
    assert m.override_section_name(['/**'], fqn) == fqn
    assert m.override_section_name(['/**', fqn], fqn) == '/**/segmif_node'
    assert m.override_section_name([fqn, '/**/segmif_node'], fqn) == '/**/**/segmif_node'
    assert m.launch_overrides('', '', '', 'true') == {'autostart': True}
    assert m.launch_overrides('/m.pt', 'cuda:1', 'false', 'false') == {
        'checkpoint': '/m.pt', 'device': 'cuda:1', 'use_sim_time': False, 'autostart': False}


def test_relative_section_is_renamed_in_place(m):
    text = textwrap.dedent('''\
        # my rig
        /**:
          ros__parameters:
            slop: 5e-2        # rcl reads a double, PyYAML a string: the text must stay
        "segmif_node":
          ros__parameters:
            device: cuda
            homography: [1, 0, 0, 0, 1, 0, 0, 0, 1]
        ''')
    out = m.rewrite_relative_section(text, '/cam/segmif_node')
    assert out == text.replace('"segmif_node":', '/cam/segmif_node:')
    assert m.rewrite_relative_section(text, '/segmif_node') is None  # root: already right
    assert m.rewrite_relative_section('/**:\n  ros__parameters: {a: 1}\n', '/c/segmif_node') \
        is None
    assert m.rewrite_relative_section('segmif_node: {ros__parameters: {a: 1}}\n',
                                      '/c/segmif_node') == \
        '/c/segmif_node: {ros__parameters: {a: 1}}\n'


def test_default_file_unchanged_and_overrides_after_it(m, temp_dir):
    params, overrides, sim = m.node_parameter_files(str(PARAMS_FILE), '/segmif_node',
                                                    '', '', '', 'true')
    assert params == str(PARAMS_FILE) and sim is False
    assert Path(overrides).parent == temp_dir
    assert yaml.safe_load(Path(overrides).read_text()) == {
        '/segmif_node': {'ros__parameters': {'autostart': True}}}


def test_relative_section_gets_a_rewritten_copy_in_a_namespace(m, tmp_path, temp_dir):
    rig = tmp_path / 'rig.yaml'
    rig.write_text('segmif_node:\n  ros__parameters:\n    slop: 5e-2\n    use_sim_time: true\n')
    params, overrides, sim = m.node_parameter_files(str(rig), '/cam/segmif_node',
                                                    '/m.pt', 'cuda', '', 'false')
    assert Path(params).parent == temp_dir and params != str(rig)
    assert Path(params).read_text() == rig.read_text().replace('segmif_node:',
                                                               '/cam/segmif_node:')
    assert rig.read_text().startswith('segmif_node:')  # the user's file is not touched
    # the file's section now has the node's name: the overrides take the next unused name
    assert yaml.safe_load(Path(overrides).read_text()) == {'/**/segmif_node': {
        'ros__parameters': {'checkpoint': '/m.pt', 'device': 'cuda', 'autostart': False}}}
    assert sim is True  # from the file (use_sim_time not given)
    _, _, sim = m.node_parameter_files(str(rig), '/cam/segmif_node', '', '', 'false', 'true')
    assert sim is False  # given: overrides the file


@pytest.mark.parametrize('content, message', [
    (None, 'does not exist'),
    ('# nothing\n', 'ros__parameters'),
    ('/**: {ros__parameters: [\n', 'not valid YAML'),
    ('/rear/segmif_node:\n  ros__parameters:\n    device: cuda\n',
     'no section for /front/segmif_node'),
])
def test_unusable_params_file_fails_and_writes_nothing(m, tmp_path, temp_dir, content, message):
    path = tmp_path / 'p.yaml'
    if content is not None:
        path.write_text(content)
    with pytest.raises(RuntimeError, match=message):
        m.node_parameter_files(str(path), '/front/segmif_node', '', '', '', 'true')
    assert list(temp_dir.iterdir()) == []
