import os

from conftest import CONFIG_DIR, load_tool

get_flops = load_tool('analysis_tools/get_flops.py')


def test_tiny_classifier_matches_published_macs(capsys):
    get_flops.main([os.path.join(CONFIG_DIR, 'hire_t_in1k.py'), '--shape', '224'])
    out = capsys.readouterr().out
    params = int(out.split('params: ')[1].split(' ')[0].replace(',', ''))
    macs = int(out.split('MACs: ')[1].split(' ')[0].replace(',', ''))
    assert params == 18_041_672
    assert abs(macs / 2.1e9 - 1) < 0.05, macs
    assert 'whole model' in out
