"""bench/gpu_report.py runs end to end on the CPU with --quick (the GPU run is the same code with larger sizes)."""
import re

from bench import gpu_report


def test_quick_gpu_report_measures_every_section_on_the_cpu(tmp_path, single_thread):
    out = tmp_path / "report.md"
    text = gpu_report.main(["--quick", "--device", "cpu", "--out", str(out)])
    assert out.read_text() == text
    for heading in ("## Training step", "## Evaluation", "## Training loader", "## One-GPU torchrun (DDP)"):
        assert heading in text, heading
    rows = {line.split("|")[1].strip() + "/" + line.split("|")[2].strip(): line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| variant")}
    for variant in ("fp32", "bf16", "bf16 + channels_last"):
        assert re.match(r"\| [^|]+ \| 2 \| \d+\.\d \|", rows[f"{variant}/2"]), rows[f"{variant}/2"]
    assert "| not run with --quick |" in text
    for steps in (2, 1):
        for k in (1, 2):
            assert re.match(r"\| \d+ \| \d \| \d+\.\d \|", rows[f"{steps}/{k}"]), rows[f"{steps}/{k}"]
    assert re.search(r"\| torchrun, 1 process \(DDP\) \| \d+\.\d \(\d\.\d\dx\) \|", text)
    assert re.search(r"\| 1 \| \d+ \| \d+\.\d\d \|", text)  # one loader worker against the step rate
    assert "skipped" not in text
