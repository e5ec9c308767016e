"""`helpdesk demo` works on its own: in-process pymap and aiosmtpd, no system packages."""
from __future__ import annotations

import subprocess
import sys

from .desk import REPO


def test_demo_shows_tickets_acknowledgements_and_the_stranger_rule():
    proc = subprocess.run([sys.executable, "-m", "maildesk", "demo"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "The desk handled 5 mails: 1 ignored, 4 ticket." in out
    assert "-> liuyang@customer.example: [TS-000002] 邮箱容量已满，无法收信" in out
    assert "感谢您联系" in out  # the Chinese acknowledgement
    assert "-> eve@other.example: [TS-000005] Cannot print from SAP" in out
    assert "director@customer.example" not in out.split("1. Customers")[1].split("2. Zhang")[0].split(
        "The desk handled")[1]
    assert "TS-000001  received  zhang.wei@customer.example" in out and "(2 mail(s) in)" in out
    # All six stages, driven by a technician's and a customer's mails.
    for stage in ("diagnosing", "proposed", "executing", "feedback", "closed"):
        assert f"-> stage {stage};" in out
    assert "TS-000002  closed    liuyang@customer.example" in out and "rated 5/5" in out
    assert "Traceback" not in proc.stderr
