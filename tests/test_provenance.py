"""Every run folder says which code made it, and a resume with other code says so."""

import json
import re

import numpy as np

from contlearn import provenance


def test_the_code_version_is_this_checkouts_commit():
  assert re.fullmatch(r"[0-9a-f]{40}(\+modified)?", provenance.code_version())


def test_each_invocation_is_recorded_and_a_change_of_code_is_said(tmp_path, capsys, monkeypatch):
  first = provenance.record(tmp_path, "tiny", ["run", "tiny", "--out", str(tmp_path)])
  assert first["command"] == f"contlearn run tiny --out {tmp_path}" and first["code"] == provenance.code_version()
  assert first["machine"] == provenance.machine() and first["machine"].startswith("cpu: ")
  assert first["packages"]["numpy"] == np.__version__ and set(first["packages"]) == set(provenance.PACKAGES)
  assert capsys.readouterr().err == ""
  monkeypatch.setattr(provenance, "code_version", lambda: "0" * 40)
  provenance.record(tmp_path, "tiny", ["run", "tiny", "--resume"])
  err = capsys.readouterr().err
  assert err.startswith(f"contlearn: {tmp_path} holds results of code {first['code']}; this invocation runs 000")
  invocations = json.loads((tmp_path / "run.json").read_text())["invocations"]
  assert [i["command"].split()[-1] for i in invocations] == [str(tmp_path), "--resume"]
  assert [i["code"] for i in invocations] == [first["code"], "0" * 40]


def test_the_end_of_an_invocation_is_added_to_its_own_entry(tmp_path):
  provenance.record(tmp_path, "tiny", ["run", "tiny"])
  provenance.record_end(tmp_path, 0)
  provenance.record(tmp_path, "tiny", ["run", "tiny", "--resume"])
  invocations = json.loads((tmp_path / "run.json").read_text())["invocations"]
  assert invocations[0]["exit_status"] == 0 and invocations[0]["ended"] >= invocations[0]["started"]
  assert "exit_status" not in invocations[1] and "ended" not in invocations[1]  # killed, or still running
  provenance.record_end(tmp_path, 3)
  invocations = json.loads((tmp_path / "run.json").read_text())["invocations"]
  assert [i["exit_status"] for i in invocations] == [0, 3]
