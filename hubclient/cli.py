"""``hub``: the Model Job Hub from the shell.

    hub jobs [--kind K] [--status S] [--limit N]      list jobs, newest first
    hub devices [--name N] [--attribute A]...         the devices (kinds of machine) workers run on
    hub show JOB                                      one job and its status details
    hub watch JOB                                     live progress; exit 1 if the job fails
    hub submit link MODEL... [--name N] [--device D] [--wait]
    hub submit compile|profile|inference --model M --device D [--options="O"] [--inputs DS]
        [--input-specs JSON] [--calibration-data DS] [--name N] [--wait]
    hub submit evaluation MODEL... --dataset D [--limit N] [--max-new-tokens T]
        [--temperature X] [--pattern RE]      base and fine-tunes side by side
    hub submit customization --dataset D [--validation-dataset V] [--model M|FOLDER]
        [--finetuning-type lora|all_weights] [--lora-rank R] [--hardware any|gpu|cpu]
                             [--epochs E] [--batch-size B] [--learning-rate L] [--wait]
    hub upload model|dataset PATH [--name N]
    hub download JOB DIR                              target model and all results
    hub cancel JOB
    hub rename JOB NAME
    hub share ID [--add EMAIL[,EMAIL]...] [--remove EMAIL...] [--disable]   a job, model or dataset
    hub logs JOB [--follow]                           the job's log; --follow until it ends
    hub delete JOB|MODEL|DATASET [--yes] [--dry-run]  what goes with it, then delete it
    hub notifications [--email-own on|off] [--email-shared on|off] [--webhook URL|--no-webhook]
        [--webhook-shared on|off] [--rotate-secret] [--test]   what you are told when jobs end
    hub activity [--limit N]                          the audit log: what you did, what was
                                                      done to what you own
    hub doctor                                        the hub's health: database, broker,
                                                      live events, reaper, workers (no token)

Every command takes --json for scripts. HUB_URL and HUB_API_TOKEN say where and who.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

from hubclient.client import Client
from hubclient.connection import DEFAULT_URL
from hubclient.errors import HubError
from hubclient.jobs import Job

console = Console()
errors = Console(stderr=True)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_jobs(hub: Client, args: argparse.Namespace) -> int:
    jobs = hub.get_jobs(limit=args.limit, kind=args.kind, status=args.status)
    if args.json:
        _print_json([job.data for job in jobs])
        return 0
    table = Table("id", "status", "kind", "name", "submitted", "progress")
    for job in jobs:
        done = job.data.get("percentage_done")
        table.add_row(
            job.job_id,
            job.data["status"],
            job.kind,
            job.name,
            f"{job.date:%Y-%m-%d %H:%M}",
            "" if done is None else f"{done:.0f}%",
        )
    console.print(table)
    return 0


def cmd_activity(hub: Client, args: argparse.Namespace) -> int:
    entries = hub.get_activity(limit=args.limit)
    if args.json:
        _print_json(entries)
        return 0
    table = Table("when", "what", "who", "on", "from")
    for entry in entries:
        what = entry["action"].replace("_", " ")
        if email := entry["detail"].get("email"):
            what += f" · {email}"
        on = f"{entry['target_kind']} {entry['target_id']}".strip()
        table.add_row(
            entry["at"][:19].replace("T", " "),
            what,
            entry["actor"] or "-",
            on,
            entry["address"] or "",
        )
    console.print(table)
    return 0


def cmd_devices(hub: Client, args: argparse.Namespace) -> int:
    devices = hub.get_devices(name=args.name or "", attributes=args.attribute or None)
    if args.json:
        _print_json([device.data for device in devices])
        return 0
    table = Table("id", "name", "workers online", "queued", "running", "attributes")
    for device in devices:
        data = device.data
        table.add_row(
            device.id,
            device.name,
            str(data["workers_online"]),
            str(data["jobs_queued"]),
            str(data["jobs_running"]),
            " ".join(data["attributes"]),
        )
    console.print(table)
    if not devices:
        console.print("No devices yet: each worker announces its machine when it starts.")
    return 0


def cmd_show(hub: Client, args: argparse.Namespace) -> int:
    job = hub.get_job(args.job)
    details = hub.request("GET", f"/api/v1/jobs/{job.job_id}/status/")
    if args.json:
        _print_json({"job": job.data, "status_details": details})
        return 0
    console.print(f"[bold]{job.name}[/bold] ({job.job_id}) · {job.kind} · owner {job.owner}")
    console.print(f"status: [bold]{job.data['status']}[/bold]   url: {job.url}")
    asked = job.device.name if job.device else job.device_attribute or "any"
    ran = f" · ran on {job.ran_device.name}" if job.ran_device else ""
    console.print(f"device: {asked}{ran}")
    if job.data.get("failure"):
        failure = job.data["failure"]
        console.print(f"[red]failed ({failure['type']}): {failure['message']}[/red]")
    for key in (
        "percentage_done",
        "epochs_completed",
        "steps_completed",
        "steps_per_epoch",
        "best_epoch",
        "train_loss",
        "val_loss",
        "elapsed_time",
    ):
        if details.get(key) is not None:
            console.print(f"  {key}: {_shown(key, details[key])}")
    for entry in details["status_logs"]:
        console.print(f"  [dim]{entry['updated_at']}[/dim] {entry['status']}: {entry['message']}")
    return 0


def _shown(key: str, value: Any) -> str:
    """A status detail as a person reads it: 28.0%, 0.4375, 1m 05s (not 28.000000000000004)."""
    if key == "percentage_done":
        return f"{value:.1f}%"
    if key.endswith("_loss"):
        return f"{value:.4f}"
    if key == "elapsed_time":
        return _duration(value)
    return str(value)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def cmd_watch(hub: Client, args: argparse.Namespace) -> int:
    job = hub.get_job(args.job)
    return _watch(job, args.json)


def _watch(job: Job, as_json: bool) -> int:
    """Follow a job's events until it finishes; 0 if it succeeded, 1 if not."""
    state: dict[str, Any] = {"status": job.data["status"]}
    with _JobProgress(console=console, disable=as_json) as progress:
        task = progress.add_task(job.job_id, total=100, status=state["status"], info="")
        for message in job.events(stop_when_finished=True):
            if as_json:
                print(json.dumps(message, default=str), flush=True)
            _apply(state, message)
            progress.update(
                task, completed=state.get("percent", 0), status=state["status"], info=_info(state)
            )
        final = job.get_status()
        # The bar ends where the job did: full when it succeeded (a job watched after it
        # finished included), where it stopped otherwise.
        done = 100 if final.success else state.get("percent", 0)
        progress.update(task, completed=done, status=final.code, info=_info(state))
    if not as_json:
        colour = "green" if final.success else "red"
        console.print(
            f"[{colour}]{job.job_id} {final.code}[/{colour}]"
            + (f": {final.message}" if final.message else "")
        )
    return 0 if final.success else 1


class _JobProgress(Progress):
    """One line of status, bar, percentage and time left, whose bar takes the room there is
    (at least MIN_BAR characters) and whose figures are never cut; the epoch, step and losses
    on a line of their own below it, so that they never squeeze the bar."""

    MIN_BAR = 20

    def __init__(self, **options: Any) -> None:
        def whole() -> Column:
            return Column(no_wrap=True, overflow="ignore")

        super().__init__(
            TextColumn("[bold]{task.fields[status]}", table_column=whole()),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=self.MIN_BAR)),
            TextColumn("{task.percentage:>5.1f}%", table_column=whole()),
            TimeRemainingColumn(table_column=whole()),
            expand=True,
            **options,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.fields.get("info"):
                yield Text(f"  {task.fields['info']}", overflow="fold")


def _apply(state: dict[str, Any], message: dict[str, Any]) -> None:
    if message.get("type") == "snapshot":
        details = message["data"]["status_details"]
        state.update(
            status=message["data"]["job"]["status"],
            **{
                k: details.get(k)
                for k in ("epochs_completed", "steps_completed", "train_loss", "val_loss")
            },
        )
        state["percent"] = _percent(
            message["data"]["job"]["status"], details.get("percentage_done")
        )
    elif message.get("event") == "status":
        state["status"] = message["data"]["status"]
        if state["status"] in ("completed", "ready"):
            state["percent"] = max(
                state.get("percent", 0),
                100 if message["data"]["status"] == "ready" else state.get("percent", 0),
            )
    elif message.get("event") == "progress":
        data = message["data"]
        state.update(
            {
                k: data.get(k)
                for k in (
                    "epochs_completed",
                    "steps_completed",
                    "total_steps",
                    "train_loss",
                    "val_loss",
                )
            }
        )
        if data.get("total_steps"):
            state["percent"] = 100 * (data.get("steps_completed") or 0) / data["total_steps"]
        state["epochs"] = (data.get("total_steps") or 0) // (
            data.get("steps_per_epoch") or 1
        ) or None


def _percent(status: str, done: float | None) -> float:
    return 100.0 if status == "ready" else float(done or 0)


def _info(state: dict[str, Any]) -> str:
    parts = []
    if state.get("epochs_completed") is not None:
        parts.append(
            f"epoch {state['epochs_completed']}"
            + (f"/{state['epochs']}" if state.get("epochs") else "")
        )
    if state.get("steps_completed") is not None:
        parts.append(
            f"step {state['steps_completed']}"
            + (f"/{state['total_steps']}" if state.get("total_steps") else "")
        )
    for key in ("train_loss", "val_loss"):
        if state.get(key) is not None:
            parts.append(f"{key} {state[key]:.4f}")
    return "  ".join(parts)


def cmd_submit(hub: Client, args: argparse.Namespace) -> int:
    job: Job
    if args.kind == "link":
        job = hub.submit_link_job(args.models, device=args.device, name=args.name)
    elif args.kind == "compile":
        job = hub.submit_compile_job(
            args.model,
            args.device,
            name=args.name,
            input_specs=json.loads(args.input_specs) if args.input_specs else None,
            options=args.options or "",
            calibration_data=args.calibration_data,
        )
    elif args.kind == "profile":
        job = hub.submit_profile_job(
            args.model, args.device, name=args.name, options=args.options or ""
        )
    elif args.kind == "inference":
        job = hub.submit_inference_job(
            args.model,
            args.device,
            args.inputs,
            name=args.name,
            options=args.options or "",
            profile=args.profile,
        )
    elif args.kind == "evaluation":
        settings = {
            key: getattr(args, key)
            for key in ("limit", "max_new_tokens", "temperature", "pattern")
            if getattr(args, key) is not None
        }
        job = hub.submit_evaluation_job(args.models, args.dataset, settings or None, name=args.name)
    else:
        hyperparameters = json.loads(args.hyperparameters) if args.hyperparameters else {}
        for name in (
            "finetuning_type",
            "epochs",
            "batch_size",
            "learning_rate",
            "log_every_n_steps",
            "early_stopping_patience",
            "max_seq_length",
        ):
            if getattr(args, name) is not None:
                hyperparameters[name] = getattr(args, name)
        if args.lora_rank is not None:
            hyperparameters.setdefault("lora", {})["adapter_dim"] = args.lora_rank
        job = hub.submit_customization_job(
            args.model,
            args.dataset,
            args.validation_dataset,
            hyperparameters or None,
            name=args.name,
            device=args.device,
            hardware=args.hardware,
        )
    if args.json and not args.wait:
        _print_json(job.data)
    elif not args.json:
        console.print(f"Submitted {job.kind} job [bold]{job.job_id}[/bold]: {job.url}")
    return _watch(job, args.json) if args.wait else 0


def cmd_upload(hub: Client, args: argparse.Namespace) -> int:
    asset = (
        hub.upload_model(args.path, args.name)
        if args.what == "model"
        else hub.upload_dataset(args.path, args.name)
    )
    if args.json:
        _print_json(asset.data)
    else:
        console.print(
            f"Uploaded {args.what} [bold]{asset.data['id']}[/bold] ({asset.data['name']})"
        )
    return 0


def cmd_download(hub: Client, args: argparse.Namespace) -> int:
    job = hub.get_job(args.job)
    results = job.download_results(args.dir)
    if args.json:
        _print_json(
            {
                "directory": str(results.directory),
                "target_model": str(results.target_model) if results.target_model else None,
                "artifacts": [str(p) for p in results.artifacts],
            }
        )
    else:
        console.print(f"Results of {job.job_id} in {results.directory}:")
        for path in [results.target_model, *results.artifacts, results.status_details]:
            if path is not None:
                console.print(f"  {path}")
    return 0 if job.get_status().success else 1


def cmd_cancel(hub: Client, args: argparse.Namespace) -> int:
    status = hub.get_job(args.job).cancel()
    if args.json:
        _print_json({"id": args.job, "status": status.code})
    else:
        console.print(f"{args.job}: {status.code}")
    return 0


def cmd_rename(hub: Client, args: argparse.Namespace) -> int:
    job = hub.get_job(args.job)
    job.set_name(args.name)
    if args.json:
        _print_json(job.data)
    else:
        console.print(f"{job.job_id} is now called {job.name!r}")
    return 0


def _emails(given: list[str]) -> list[str]:
    """Addresses given as separate words, comma lists (``a,b``) or both."""
    return [part.strip() for word in given for part in word.split(",") if part.strip()]


def cmd_share(hub: Client, args: argparse.Namespace) -> int:
    """A job, a model or a dataset, told apart by the first letter of its id (j, m, d)."""
    shared: Any
    if args.id.startswith("m"):
        shared = hub.get_model(args.id)
    elif args.id.startswith("d"):
        shared = hub.get_dataset(args.id)
    else:
        shared = hub.get_job(args.id)
    if args.disable:
        shared.disable_sharing()
    elif args.add or args.remove:
        shared.modify_sharing(add_emails=_emails(args.add), delete_emails=_emails(args.remove))
    emails = shared.get_sharing()
    if args.json:
        _print_json({"id": args.id, "emails": emails})
    else:
        console.print(f"{args.id} is shared with: " + (", ".join(emails) if emails else "nobody"))
    return 0


def cmd_logs(hub: Client, args: argparse.Namespace) -> int:
    job = hub.get_job(args.job)
    lines = job.stream_logs() if args.follow else job.get_logs()
    styles = {"warning": "yellow", "error": "red"}
    for line in lines:
        if args.json:
            print(
                json.dumps(
                    {"n": line.n, "at": line.at.isoformat(), "level": line.level, "text": line.text}
                ),
                flush=True,
            )
        else:
            style = styles.get(line.level)
            console.print(str(line), style=style, markup=False, highlight=False, soft_wrap=True)
    return 0 if not args.follow or job.get_status().success else 1


def cmd_generate(hub: Client, args: argparse.Namespace) -> int:
    """Print the model's answer as it is written (``--json``: one line, the whole result)."""
    options: dict[str, Any] = {"chat": not args.raw}
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature
    answer = hub.generate(args.model, args.prompt, stream=True, **options)
    assert not isinstance(answer, str)
    for piece in answer:
        if not args.json:
            print(piece, end="", flush=True)
    if args.json:
        _print_json(answer.result)
    else:
        print(flush=True)
        result = answer.result
        errors.print(
            f"[dim]{result.get('tokens')} tokens · first after {result.get('first_token_seconds')} s"
            f" · all in {result.get('seconds')} s{' · model was loaded' if result.get('warm') else ''}[/dim]"
        )
    return 0


def _deletable(hub: Client, public_id: str) -> Any:
    """The job, model or dataset an id names (its first letter says which)."""
    kinds = {"j": hub.get_job, "m": hub.get_model, "d": hub.get_dataset}
    if public_id[:1] not in kinds:
        raise HubError(
            f"{public_id!r} is not the id of a job (j…), a model (m…) or a dataset (d…)."
        )
    return kinds[public_id[0]](public_id)


def cmd_delete(hub: Client, args: argparse.Namespace) -> int:
    target = _deletable(hub, args.id)
    plan = target.deletion_plan()
    if args.json and (args.dry_run or plan["blocked"]):
        _print_json(plan)
        return 1 if plan["blocked"] else 0
    if not args.json:
        console.print(f"Deleting {plan['kind']} {plan['name']} ({plan['id']}) takes with it:")
        for line in [f"the {plan['kind']} itself, for everyone it is shared with", *plan["goes"]]:
            console.print(f"  - {line}")
        for line in plan["kept"]:
            console.print(f"  [dim]stays: {line}[/dim]")
        if plan["blocked"]:
            errors.print(f"[red]Not now: {plan['blocked']}[/red]")
            return 1
        if args.dry_run:
            return 0
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            errors.print("Add --yes to delete without being asked (nothing was deleted).")
            return 2
        if input("Delete it? This cannot be undone. [y/N] ").strip().lower() not in ("y", "yes"):
            console.print("Kept.")
            return 1
    gone = target.delete()
    if args.json:
        _print_json(gone)
    else:
        console.print(f"Deleted {gone['kind']} {gone['id']}.")
    return 0


NOTIFICATION_OPTIONS = {
    "email_own": "email_own_jobs",
    "email_shared": "email_shared_jobs",
    "webhook_shared": "webhook_shared_jobs",
    "when_finished": "when_finished",
    "when_failed": "when_failed",
    "when_cancelled": "when_cancelled",
}


def cmd_notifications(hub: Client, args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {
        field: getattr(args, option) == "on"
        for option, field in NOTIFICATION_OPTIONS.items()
        if getattr(args, option) is not None
    }
    if args.webhook is not None or args.no_webhook:
        changes["webhook_url"] = "" if args.no_webhook else args.webhook
    settings = (
        hub.set_notification_settings(**changes) if changes else hub.get_notification_settings()
    )
    if args.rotate_secret:
        settings = hub.rotate_webhook_secret()
    tested = hub.test_webhook() if args.test else None
    if args.json:
        _print_json({**settings, "test": tested} if tested else settings)
        return 0 if tested is None or tested["ok"] else 1
    on = {True: "[green]on[/green]", False: "off"}
    ends = [e for e in ("finished", "failed", "cancelled") if settings[f"when_{e}"]]
    console.print(f"tell me when a job: {', '.join(ends) or 'never'}")
    console.print(f"email to {settings['email'] or '(no address on your account)'}")
    console.print(f"  my jobs: {on[settings['email_own_jobs']]}")
    console.print(f"  jobs shared with me: {on[settings['email_shared_jobs']]}")
    console.print(f"webhook: {settings['webhook_url'] or 'none'}")
    if settings["webhook_url"]:
        console.print(f"  jobs shared with me too: {on[settings['webhook_shared_jobs']]}")
    console.print(f"  secret: {settings['webhook_secret']}")
    if tested is not None:
        colour = "green" if tested["ok"] else "red"
        console.print(f"[{colour}]test: {tested['message']}[/{colour}]")
        return 0 if tested["ok"] else 1
    return 0


def parser() -> argparse.ArgumentParser:
    # --json before the command (hub --json jobs) or after it (hub jobs --json): a command's
    # own option is left unset unless given, so that it does not undo the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    main = argparse.ArgumentParser(prog="hub", description="The Model Job Hub from the shell.")
    main.add_argument("--json", action="store_true", help="print JSON for scripts")
    main.add_argument("--url", help="the hub's address (default: $HUB_URL)")
    main.add_argument("--token", help="API token (default: $HUB_API_TOKEN)")
    commands = main.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "doctor", parents=[common], help="the hub's health (database, broker, workers, reaper)"
    )
    jobs = commands.add_parser("jobs", parents=[common], help="list jobs")
    jobs.add_argument(
        "--kind",
        choices=[
            "link",
            "customization",
            "external",
            "compile",
            "profile",
            "inference",
            "evaluation",
        ],
    )
    jobs.add_argument("--status")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(run=cmd_jobs)
    activity = commands.add_parser(
        "activity", parents=[common], help="the audit log's entries about you and yours"
    )
    activity.add_argument("--limit", type=int, default=50)
    activity.set_defaults(run=cmd_activity)

    devices = commands.add_parser(
        "devices", parents=[common], help="the devices (kinds of machine) the workers run on"
    )
    devices.add_argument("--name", help="part of a device's name")
    devices.add_argument(
        "--attribute", action="append", help="an attribute it must have (repeatable)"
    )
    devices.set_defaults(run=cmd_devices)

    for name, run, helptext in (
        ("show", cmd_show, "show a job"),
        ("watch", cmd_watch, "follow a job live"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        sub = commands.add_parser(name, parents=[common], help=helptext)
        sub.add_argument("job")
        sub.set_defaults(run=run)

    rename = commands.add_parser("rename", parents=[common], help="rename a job")
    rename.add_argument("job")
    rename.add_argument("name")
    rename.set_defaults(run=cmd_rename)

    submit = commands.add_parser("submit", help="submit a job").add_subparsers(
        dest="kind", required=True
    )
    link = submit.add_parser(
        "link", parents=[common], help="link ONNX models (ids or files) into one"
    )
    link.add_argument("models", nargs="+")
    customization = submit.add_parser(
        "customization", parents=[common], help="fine-tune a model on a dataset"
    )
    customization.add_argument("--dataset", required=True, help="dataset id or JSONL file")
    customization.add_argument("--validation-dataset")
    customization.add_argument(
        "--model",
        help="a base model the hub offers (default tiny-llama), a model id, or a Hugging Face "
        "model folder or archive to upload",
    )
    customization.add_argument(
        "--finetuning-type", dest="finetuning_type", choices=["lora", "all_weights"]
    )
    customization.add_argument("--lora-rank", dest="lora_rank", type=int, help="adapter_dim")
    customization.add_argument("--max-seq-length", dest="max_seq_length", type=int)
    customization.add_argument("--hardware", choices=["any", "gpu", "cpu"])
    customization.add_argument("--hyperparameters", help="JSON object")
    customization.add_argument("--epochs", type=int)
    customization.add_argument("--batch-size", dest="batch_size", type=int)
    customization.add_argument("--learning-rate", dest="learning_rate", type=float)
    customization.add_argument("--log-every-n-steps", dest="log_every_n_steps", type=int)
    customization.add_argument(
        "--early-stopping-patience", dest="early_stopping_patience", type=int
    )
    compile_ = submit.add_parser(
        "compile", parents=[common], help="an optimized ONNX model for a device (fp16, int8)"
    )
    compile_.add_argument(
        "--input-specs",
        dest="input_specs",
        help='JSON: {"x": [1, 8]} or {"x": [[1, 8], "float32"]}',
    )
    compile_.add_argument(
        "--calibration-data", dest="calibration_data", help="dataset id or h5/.npz file (int8)"
    )
    profile = submit.add_parser(
        "profile", parents=[common], help="measure a model on a device (latency, memory, layers)"
    )
    inference = submit.add_parser(
        "inference", parents=[common], help="run a model on a device over named tensors"
    )
    inference.add_argument("--inputs", required=True, help="dataset id or h5/.npz file")
    inference.add_argument(
        "--profile", action="store_true", help="also profile the model after its samples run"
    )
    for sub in (compile_, profile, inference):
        sub.add_argument("--model", required=True, help="model id, or an ONNX file to upload")
        sub.add_argument(
            "--options",
            help='seed 000\'s options, written with "=": --options="--quantize_full_type float16"',
        )
    for sub in (compile_, profile, inference):
        sub.add_argument("--name")
        sub.add_argument(
            "--device", required=True, help="a device's name or id (hub devices), or an attribute"
        )
        sub.add_argument("--wait", action="store_true", help="follow the job until it finishes")
        sub.set_defaults(run=cmd_submit)
    evaluation = submit.add_parser(
        "evaluation",
        parents=[common],
        help="score models (a base and its fine-tunes) on a dataset's rows",
    )
    evaluation.add_argument("models", nargs="+", help="model ids or offered base model names")
    evaluation.add_argument("--dataset", required=True, help="dataset id or JSONL file")
    evaluation.add_argument("--limit", type=int, help="the first N rows only")
    evaluation.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    evaluation.add_argument("--temperature", type=float, help="0 (default) is greedy")
    evaluation.add_argument("--pattern", help="a regular expression outputs are checked against")
    for sub in (link, customization, evaluation):
        sub.add_argument("--name")
        sub.add_argument("--device")
        sub.add_argument("--wait", action="store_true", help="follow the job until it finishes")
        sub.set_defaults(run=cmd_submit)

    upload = commands.add_parser("upload", parents=[common], help="upload a model or dataset")
    upload.add_argument("what", choices=["model", "dataset"])
    upload.add_argument("path")
    upload.add_argument("--name")
    upload.set_defaults(run=cmd_upload)

    share = commands.add_parser(
        "share", parents=[common], help="show or change who a job, model or dataset is shared with"
    )
    share.add_argument("id", help="a job, model or dataset id (j…, m…, d…)")
    share.add_argument("--add", nargs="+", default=[], metavar="EMAIL")
    share.add_argument("--remove", nargs="+", default=[], metavar="EMAIL")
    share.add_argument("--disable", action="store_true", help="stop sharing with anyone")
    share.set_defaults(run=cmd_share)

    logs = commands.add_parser("logs", parents=[common], help="a job's log")
    logs.add_argument("job")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="print new lines until the job finishes"
    )
    logs.set_defaults(run=cmd_logs)

    generate = commands.add_parser(
        "generate", parents=[common], help="try a language model: print its answer as it comes"
    )
    generate.add_argument("model", help="a model id (m…) or a name the hub offers (tiny-llama)")
    generate.add_argument("prompt")
    generate.add_argument("--max-tokens", dest="max_tokens", type=int)
    generate.add_argument("--temperature", type=float, help="0 (default) is greedy")
    generate.add_argument(
        "--raw", action="store_true", help="send the prompt as it is, not as a user's chat turn"
    )
    generate.set_defaults(run=cmd_generate)

    delete = commands.add_parser(
        "delete", parents=[common], help="delete a job, model or dataset (its owner only)"
    )
    delete.add_argument("id", help="a job (j…), model (m…) or dataset (d…) id")
    delete.add_argument("--yes", action="store_true", help="do not ask before deleting")
    delete.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="say what would go; delete nothing"
    )
    delete.set_defaults(run=cmd_delete)

    notify = commands.add_parser(
        "notifications", parents=[common], help="show or change what you are told when jobs end"
    )
    for option in NOTIFICATION_OPTIONS:
        notify.add_argument(f"--{option.replace('_', '-')}", choices=["on", "off"])
    webhook = notify.add_mutually_exclusive_group()
    webhook.add_argument("--webhook", metavar="URL", help="POST a signed message here")
    webhook.add_argument("--no-webhook", action="store_true", help="remove the webhook")
    notify.add_argument("--rotate-secret", action="store_true", help="a new webhook secret")
    notify.add_argument("--test", action="store_true", help="POST a test message to the webhook")
    notify.set_defaults(run=cmd_notifications)

    download = commands.add_parser(
        "download", parents=[common], help="download a job's target model and results"
    )
    download.add_argument("job")
    download.add_argument("dir")
    download.set_defaults(run=cmd_download)
    return main


def cmd_doctor(args: argparse.Namespace) -> int:
    """GET /healthz (no token needed) and say what is wrong; exit 1 unless all is well."""
    url = (args.url or os.environ.get("HUB_URL") or DEFAULT_URL).rstrip("/")
    try:
        response = httpx.get(f"{url}/healthz", timeout=15)
        report = response.json()
    except (httpx.HTTPError, ValueError) as error:
        errors.print(f"[red]The hub at {url} does not answer: {error}[/red]")
        return 2
    if args.json:
        _print_json(report)
        return 0 if report.get("status") == "ok" else 1
    for part in ("database", "broker", "live", "storage"):
        check = report.get(part, {})
        mark = (
            "[green]ok[/green]" if check.get("ok") else f"[red]{check.get('error', 'down')}[/red]"
        )
        depth = check.get("queue_depth")
        extra = (
            " · queued " + ", ".join(f"{queue} {n}" for queue, n in depth.items())
            if isinstance(depth, dict)
            else ""
        )
        if "free_bytes" in check:
            extra = f" · {check['free_bytes'] / 2**30:.1f} GiB free"
        console.print(f"{part:<14} {mark} ({check.get('ms', '?')} ms){extra}")
    circuit = report.get("redis")
    if isinstance(circuit, dict) and circuit.get("circuit") == "open":
        console.print(
            f"{'redis':<14} [red]circuit open[/red] for {circuit.get('open_s', '?')} s "
            f"({circuit.get('error', '?')}): the hub skips Redis (rate limits off, jobs wait "
            f"pending, live events from the database) and asks it again every "
            f"{circuit.get('retry_every_s', '?')} s"
        )
    elif isinstance(circuit, dict):
        console.print(f"{'redis':<14} [green]ok[/green] (circuit closed)")
    if "jobs" in report:
        last = report.get("last_reap_s_ago")
        console.print(
            f"{'reaper':<14} last run {'never' if last is None else f'{last} s ago'} "
            f"(every {report['reap_interval_s']} s)"
        )
        console.print(f"{'jobs':<14} " + ", ".join(f"{k} {v}" for k, v in report["jobs"].items()))
        workers = report.get("workers_seen") or []
        console.print(
            f"{'workers':<14} "
            + (
                ", ".join(
                    f"{w['name']} ({'/'.join(w['hardware'])}, {w['seen_s_ago']} s ago)"
                    for w in workers
                )
                or "none seen recently"
            )
        )
    status = report.get("status")
    console.print(
        "[green]All well.[/green]"
        if status == "ok"
        else f"[yellow]Degraded:[/yellow] {'; '.join(report.get('problems', []))}"
    )
    return 0 if status == "ok" else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "doctor":
        return cmd_doctor(args)
    try:
        with Client(url=args.url, token=args.token) as hub:
            return int(args.run(hub, args))
    except HubError as error:
        where = f" ({error.field})" if error.field else ""
        errors.print(f"[red]error{where}:[/red] {error.message}")
        return 2
    except TimeoutError as error:
        errors.print(f"[red]{error}[/red]")
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
