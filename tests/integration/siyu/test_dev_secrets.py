"""`siyu dev` refuses to start, naming the secret, when the tenants file names one that is unset
(the checks themselves: tests/unit/shared/test_tenants_secrets.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.unit.shared.test_tenants_secrets import tenants_yaml


def test_dev_stops_at_start_naming_the_missing_secret(stack, tmp_path):
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants_yaml(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIYU_", "TEA_"))}
    env.update(  # the session's servers: nothing embedded is started
        SIYU_DATABASE_URL=stack.dsn,
        SIYU_KAFKA_BOOTSTRAP=stack.bootstrap,
        SIYU_TENANTS=str(path),
        TEA_OA_SECRET="s",
    )
    argv = [sys.executable, "-m", "siyu.cli", "dev", "--home", str(tmp_path / "home"),
            "--no-services"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tenant tea: wecom.secret_env names TEA_WECOM_SECRET, which is not set" in done.stderr
    assert "ready" not in done.stdout
