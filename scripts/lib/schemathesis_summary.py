"""One line of figures from a schemathesis run's NDJSON report (scripts/security-scan):
operations tested, test cases, failed checks, and responses with a 5xx status."""
import glob
import json
import sys

operations, cases, failures, server_errors = set(), set(), set(), 0
for path in glob.glob(f"{sys.argv[1]}/*.ndjson"):
    for line in open(path, encoding="utf-8"):
        event = json.loads(line).get("ScenarioFinished")
        if not event:
            continue
        recorder = event["recorder"]
        if recorder["label"].split(" ")[0] in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
            operations.add(recorder["label"])
        for case_id in recorder.get("cases") or {}:
            cases.add(case_id)
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check["status"] == "failure":
                    failures.add((recorder["label"], case_id, check["name"]))
        for interaction in (recorder.get("interactions") or {}).values():
            response = interaction.get("response") or {}
            if response.get("status_code", 0) >= 500:
                server_errors += 1
print(f"operations={len(operations)} cases={len(cases)} failures={len(failures)} server_errors={server_errors}")
