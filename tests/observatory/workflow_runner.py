"""A GitHub workflow job's steps, run here as GitHub's hosted runner runs them.

nektos/act needs Docker; this runs a job's steps in order in a clean clone,
as a user that is not root (GitHub's runner user has no root, only sudo),
with the workflow's, job's and step's ``env``, ``${{ }}`` expressions
evaluated, ``if:`` honoured (``always()``, ``success()``, ``failure()``), each
``run:`` script under ``bash -e -o pipefail`` as GitHub does, and
``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY`` and ``$GITHUB_ENV`` files.

Actions are emulated by what they do to the workspace:
``actions/checkout`` (the clone is the checkout), ``actions/setup-python``
(a Python prepended to PATH), ``actions/cache`` (the path linked to a
folder of the key, kept between runs), ``actions/upload-artifact`` (every
path must exist: a wrong path fails the step), ``actions/upload-pages-artifact``
(the folder must hold an index.html) and ``actions/github-script``
(the script run by Node.js against a recording stand-in for the GitHub
client). Others are recorded as not emulated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.(?:[\w-]+|\*))*))"
)


def evaluate(expression: str, context: dict, status: str = "success", workspace: Path | None = None):
    """A GitHub expression's value: literals, contexts (``github.event.x``,
    ``inputs.x``, ``vars.x``, ``steps.id.outputs.x``, ``a.*.b``), ``!``, ``==``,
    ``!=``, ``&&``, ``||`` (the first truthy operand, as GitHub's) and the
    functions these workflows use."""

    def lookup(path: str):
        value = context
        for i, part in enumerate(path.split(".")):
            if part == "*":
                rest = ".".join(path.split(".")[i + 1 :])
                items = value if isinstance(value, list) else []
                return [lookup_in(item, rest) for item in items]
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def lookup_in(item, path):
        for part in path.split(".") if path else []:
            item = item.get(part) if isinstance(item, dict) else None
        return item

    def hash_files(*patterns):
        found = [p for pattern in patterns for p in (workspace or Path.cwd()).glob(pattern) if p.is_file()]
        return "x" * 40 if found else ""

    functions = {
        "always": lambda: True,
        "success": lambda: status == "success",
        "failure": lambda: status == "failure",
        "cancelled": lambda: False,
        "contains": lambda haystack, needle: needle in (haystack or []),
        "hashFiles": hash_files,
        "format": lambda text, *args: text.format(*args),
    }
    python, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read the expression {expression!r} at {position}")
        position = match.end()
        if match["str"] is not None:
            python.append(repr(match["str"][1:-1].replace("''", "'")))
        elif match["num"] is not None:
            python.append(match["num"])
        elif match["op"] is not None:
            python.append({"&&": " and ", "||": " or ", "!": " not "}.get(match["op"], match["op"]))
        elif match["name"] in ("true", "false", "null"):
            python.append({"true": "True", "false": "False", "null": "None"}[match["name"]])
        elif expression[position:].lstrip().startswith("(") and match["name"] in functions:
            python.append(f"_functions[{match['name']!r}]")
        else:
            python.append(f"_lookup({match['name']!r})")
    return eval("".join(python), {"_functions": functions, "_lookup": lookup})  # noqa: S307


def interpolate(text: str, context: dict, status: str = "success", workspace: Path | None = None) -> str:
    """``text`` with each ``${{ expression }}`` replaced by its value as GitHub writes it."""

    def value(match):
        found = evaluate(match.group(1), context, status, workspace)
        if found is None:
            return ""
        if isinstance(found, bool):
            return "true" if found else "false"
        return str(found)

    return re.sub(r"\$\{\{(.*?)\}\}", value, str(text), flags=re.S)


@dataclass
class Step:
    name: str
    outcome: str  # "success", "failure", "skipped", "not emulated"
    code: int | None = None
    output: str = ""
    seconds: float = 0.0  # wall time, as GitHub shows beside each step


@dataclass
class Job:
    steps: list[Step] = field(default_factory=list)
    summary: str = ""
    github_calls: list[dict] = field(default_factory=list)  # what github-script asked of GitHub
    uploaded: list[Path] = field(default_factory=list)

    def step(self, name: str) -> Step:
        (found,) = [s for s in self.steps if s.name == name]
        return found


#: Node.js runs a github-script step's script against this stand-in: every
#: call is recorded; issues.listComments returns the comments given.
_GITHUB_SCRIPT = r"""
const fs = require('fs');
const [script, callsPath, contextPath, commentsPath] = process.argv.slice(2);
const calls = [];
const record = (name, result) => async (args) => {
  calls.push({ name, args });
  return { data: result(args) };
};
const comments = JSON.parse(fs.readFileSync(commentsPath, 'utf8'));
const github = {
  rest: { issues: {
    listComments: record('issues.listComments', () => comments),
    createComment: record('issues.createComment', () => ({ id: 1000 })),
    updateComment: record('issues.updateComment', () => ({})),
    listForRepo: record('issues.listForRepo', () => []),
    create: record('issues.create', () => ({})),
    update: record('issues.update', () => ({})),
  } },
  paginate: async (method, args) => (await method(args)).data,
};
const context = JSON.parse(fs.readFileSync(contextPath, 'utf8'));
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
new AsyncFunction('github', 'context', 'require', script)(github, context, require)
  .then(() => fs.writeFileSync(callsPath, JSON.stringify(calls)))
  .catch((error) => { console.error(error); process.exit(1); });
"""


def run_job(workflow: Path, job_name: str, workspace: Path, *, event_name: str, event: dict,
            python_bin: Path, user: tuple[int, int] | None = None, home: Path | None = None,
            variables: dict | None = None, cache_root: Path | None = None, comments: list | None = None,
            timeout: float = 3600) -> Job:  # fmt: skip
    """Run ``job_name`` of ``workflow`` in ``workspace`` (a clean clone) as
    ``user`` (uid, gid; None: this process's), with ``python_bin`` as the
    Python actions/setup-python provides and ``variables`` as the
    repository's ``vars``."""
    spec = yaml.safe_load(workflow.read_text())
    job_spec = spec["jobs"][job_name]
    scratch = workspace.parent / f"{workspace.name}-runner"
    scratch.mkdir(exist_ok=True)
    files = {name: scratch / name for name in ("output", "summary", "env")}
    for path in files.values():
        path.write_text("")
    if user:
        for path in [scratch, *files.values()]:
            os.chown(path, *user)
    repository = event.get("repository", {}).get("full_name", "lenskern/lenskern")
    context = {
        "github": {"event_name": event_name, "event": event, "repository": repository,
                   "run_id": "1", "sha": event.get("after", ""), "workspace": str(workspace)},
        "inputs": event.get("inputs", {}) if event_name == "workflow_dispatch" else {},
        "vars": variables or {},
        "runner": {"os": "Linux", "temp": str(scratch)},
        "steps": {},
        "env": {},
    }  # fmt: skip
    path_entries = [
        str(python_bin),
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    base_env = {
        "HOME": str(home or Path.home()), "PATH": ":".join(path_entries), "CI": "true",
        "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace), "GITHUB_EVENT_NAME": event_name,
        "GITHUB_REPOSITORY": repository, "GITHUB_SHA": context["github"]["sha"], "RUNNER_OS": "Linux",
        "GITHUB_OUTPUT": str(files["output"]), "GITHUB_STEP_SUMMARY": str(files["summary"]),
        "GITHUB_ENV": str(files["env"]), "LANG": "C.UTF-8",
    }  # fmt: skip
    job = Job()
    status = "success"
    env = dict(base_env)
    for scope in (spec.get("env") or {}, job_spec.get("env") or {}):
        for key, value in scope.items():
            env[key] = interpolate(value, context, status, workspace)
    context["env"] = env
    for index, step_spec in enumerate(job_spec["steps"]):
        name = step_spec.get("name") or step_spec.get("uses") or f"step {index}"
        condition = step_spec.get("if", "success()")
        if not evaluate(str(condition).removeprefix("${{").removesuffix("}}"), context, status, workspace):
            job.steps.append(Step(name, "skipped"))
            continue
        started = time.monotonic()
        step_env = dict(env)
        for key, value in (step_spec.get("env") or {}).items():
            step_env[key] = interpolate(value, context, status, workspace)
        with_ = {
            k: interpolate(v, context, status, workspace) for k, v in (step_spec.get("with") or {}).items()
        }
        if "run" in step_spec:
            script = scratch / f"step-{index}.sh"
            script.write_text(interpolate(step_spec["run"], context, status, workspace))
            files["output"].write_text("")
            as_user = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                  cwd=workspace, env=step_env, capture_output=True, text=True,
                                  timeout=timeout, **as_user)  # fmt: skip
            outputs = dict(
                line.split("=", 1) for line in files["output"].read_text().splitlines() if "=" in line
            )
            if step_spec.get("id"):
                context["steps"][step_spec["id"]] = {"outputs": outputs}
            for line in files["env"].read_text().splitlines():
                if "=" in line:
                    key, value = line.split("=", 1)
                    env[key] = value
            outcome = "success" if done.returncode == 0 else "failure"
            job.steps.append(Step(name, outcome, done.returncode, done.stdout + done.stderr,
                                  time.monotonic() - started))  # fmt: skip
        else:
            outcome = _action(step_spec["uses"], with_, workspace, scratch, context, job, user, cache_root,
                              comments or [])  # fmt: skip
            job.steps.append(Step(name, outcome, seconds=time.monotonic() - started))
        if outcome == "failure" and not step_spec.get("continue-on-error"):
            status = "failure"
    job.summary = files["summary"].read_text()
    print(
        f"{workflow.name} {job_name}: "
        + ", ".join(f"{s.name} {s.seconds:.0f} s" for s in job.steps if s.seconds >= 1)
    )
    return job


def _action(uses: str, with_: dict, workspace: Path, scratch: Path, context: dict, job: Job,
            user: tuple[int, int] | None, cache_root: Path | None, comments: list) -> str:  # fmt: skip
    action = uses.split("@")[0]
    if action in ("actions/checkout", "actions/setup-python"):
        return "success"  # the clean clone, and the Python on PATH
    if action == "actions/cache":
        if cache_root is None:
            return "not emulated"
        key = re.sub(r"[^\w.-]", "_", with_["key"])
        for line in with_["path"].split():
            stored = cache_root / key / line.replace("/", "_")
            stored.mkdir(parents=True, exist_ok=True)
            target = workspace / line
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(stored, target_is_directory=True)
            if user:
                for path in (stored, target.parent):
                    os.chown(path, *user)
        return "success"
    if action == "actions/upload-artifact":
        paths = [workspace / line for line in with_["path"].split()]
        missing = [p for p in paths if not p.exists() or (p.is_dir() and not any(p.rglob("*")))]
        if missing and with_.get("if-no-files-found", "warn") == "error":
            return "failure"
        job.uploaded = [p for p in paths if p not in missing]
        return "success"
    if action == "actions/upload-pages-artifact":
        site = workspace / with_["path"]  # the action tars this folder: it must hold a site
        if not (site / "index.html").is_file():
            return "failure"
        job.uploaded = [site]
        return "success"
    if action == "actions/github-script":
        script, calls = scratch / "github-script.cjs", scratch / "github-calls.json"
        script.write_text(_GITHUB_SCRIPT)
        (scratch / "context.json").write_text(json.dumps({
            "repo": dict(zip(("owner", "repo"), context["github"]["repository"].split("/"))),
            "issue": {"number": context["github"]["event"].get("number")},
            "payload": context["github"]["event"],
        }))  # fmt: skip
        (scratch / "comments.json").write_text(json.dumps(comments))
        done = subprocess.run([shutil.which("node") or "node", str(script), with_["script"], str(calls),
                               str(scratch / "context.json"), str(scratch / "comments.json")],
                              cwd=workspace, capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            job.steps.append(Step("github-script (error)", "failure", done.returncode, done.stderr))
            return "failure"
        job.github_calls = json.loads(calls.read_text())
        return "success"
    return "not emulated"
