"""The overflow executor: SageMaker asynchronous inference in front of the container adapter.

Per job: the request (`{"job_id", "graph", "extra_data", "images"}`, the adapter's contract) goes to
`s3://<bucket>/<jobs prefix><job_id>/input.json`, then InvokeEndpointAsync with InferenceId = job id,
S3OutputPathExtension = job id and a deterministic Filename per invocation (`invocation-<n>.json`), so
every invocation's output and failure keys are known before it is made. SageMaker writes the adapter's
answer to the output location (200) or the failure location (non-2xx) and notifies SNS → SQS.

Exactly once. SageMaker does not deduplicate on InferenceId, so every invocation is recorded on the job
(`Job.external["invocations"]`) *before* it is made, as an intent with the predicted locations, and
again with SageMaker's answer. On resume (an adopted job) nothing is invoked blindly: no invocation
recorded → invoke; otherwise the output and failure objects of every recorded invocation are looked
up (S3 HEAD), and a new invocation is made only once `RequestTTLSeconds + InvocationTimeoutSeconds`
(+ a grace) have passed since the last one with neither object, while attempts < MAX_ATTEMPTS.

Source of truth: S3, not SQS. The queue is shared by every dispatcher and a notification may be for a
job another one holds, so a message only wakes the job it names (its locations are taken as hints);
it is deleted when that job is ours (the S3 objects outlive it) or final / unknown, and left alone
for the visibility timeout to hand it to its holder otherwise (or, after the stack's maxReceiveCount,
to the dead-letter queue). Every followed job is also checked on S3 every SAGEMAKER_POLL_S, so a lost,
bounced or deleted message only costs latency, never a result. (ChangeMessageVisibility would hand a
message back sooner, but the backend role may only receive and delete.)

Cancel: a request queued at SageMaker cannot be withdrawn. A cancel before the invocation ends the job
at once; after it, the job is followed to its end (so SAGEMAKER_MAX_IN_FLIGHT keeps counting the GPU
work really under way) and then marked cancelled without storing anything.

Events are coarse: `submitted` per invocation, `started` when SageMaker accepts it, then the end.
Every change of job state goes through the `JobGateway` (`backend/job_context.py`), which also builds
the request (the same render request the ComfyUI executor sends, with its images inside it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend.executors.base import Followed, FollowedJobs
from backend.job_context import JobGateway, RenderOutput
from backend.models import Job, JobStatus
from backend.render_request import InvalidJob

logger = logging.getLogger(__name__)

INPUT_NAME = "input.json"
SERVES = frozenset({"text", "sketch"})  # job kinds: the adapter renders both
SQS_WAIT_S = 2  # long-poll length: short, so that a stopping dispatcher is not held up
SQS_ERROR_BACKOFF_S = 2.0
EXPIRY_GRACE_S = 2.0  # on top of TTL + timeout before an invocation with no result counts as lost
INVOKE_BACKOFF_S = 2.0  # SageMaker refused an invocation: the job waits this long in the queue
UNAVAILABLE_S = 5.0  # ... and this executor takes no job for this long
S3_RETRY_S = 1.0


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def parse_notification(body: str) -> dict[str, Any] | None:
    """A SageMaker async notification from an SQS body: raw delivery or wrapped in an SNS envelope."""
    try:
        msg = json.loads(body)
        if (
            isinstance(msg, dict)
            and msg.get("Type") == "Notification"
            and isinstance(msg.get("Message"), str)
        ):
            msg = json.loads(msg["Message"])
    except (TypeError, ValueError):
        return None
    if not isinstance(msg, dict) or not msg.get("inferenceId"):
        return None
    return msg


@dataclass
class Active(Followed):
    """What this executor knows of one job it follows."""

    submitting: bool = False
    output_hints: set[str] = field(default_factory=set)  # result locations named by notifications
    failure_hints: set[str] = field(default_factory=set)
    failure_reason: str = ""
    invoked_mono: float = field(default_factory=time.monotonic)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _age_s(iso: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return float("inf")


class SageMakerExecutor(FollowedJobs[Active]):
    executor_type = "sagemaker"

    def __init__(self, ctx: JobGateway) -> None:
        settings = ctx.settings
        if not settings.sagemaker_bucket:
            raise ValueError("SAGEMAKER_BUCKET must be set when SAGEMAKER_ENDPOINT_NAME is")
        super().__init__(ctx, settings.sagemaker_max_in_flight)
        self.settings = settings
        self.name = settings.sagemaker_endpoint_name
        self.serves = SERVES
        self.bucket = settings.sagemaker_bucket
        self.draining = False
        self.ready = False
        self.unavailable_until = 0.0
        self._s3: Any = None
        self._sqs: Any = None
        self._runtime: Any = None
        self._sqs_task: asyncio.Task[None] | None = None

    # --- capacity, as the dispatcher sees it ------------------------------------------------------
    @property
    def is_available(self) -> bool:
        return self.ready and not self.draining and time.monotonic() >= self.unavailable_until

    def preferred_lora(self) -> str | None:
        return None  # every request loads its own LoRA on whichever instance takes it

    # --- lifecycle --------------------------------------------------------------------------------
    def _make_clients(self) -> None:
        import boto3
        from botocore.config import Config

        s = self.settings
        region = s.sagemaker_region or s.s3_region
        common = {"connect_timeout": 5, "read_timeout": 30}
        self._s3 = boto3.client(
            "s3",
            endpoint_url=s.aws_endpoint_url,
            region_name=region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if s.aws_endpoint_url else "auto"},
                retries={"max_attempts": 4, "mode": "standard"},
                **common,
            ),
        )
        self._sqs = boto3.client(
            "sqs",
            endpoint_url=s.aws_endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30
            ),
        )
        # No automatic retry: SageMaker does not deduplicate, and a retried invoke could run twice.
        self._runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=s.sagemaker_runtime_endpoint_url,
            region_name=region,
            # Client-side checks off: the tests' stand-in takes a RequestTTLSeconds below AWS's 60.
            config=Config(retries={"total_max_attempts": 1}, parameter_validation=False, **common),
        )

    async def start(self) -> None:
        await asyncio.to_thread(self._make_clients)
        self.ready = True
        if self.settings.sagemaker_notify_queue_url:
            self._sqs_task = asyncio.create_task(self._sqs_loop(), name=f"sqs {self.name}")

    async def close(self) -> None:
        if self._sqs_task:
            self._sqs_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sqs_task

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: take nothing new; let invocations under way be recorded; the rest is adopted."""
        self.draining = True
        deadline = time.monotonic() + min(grace_s, 10.0)
        # An invocation in flight is two quick calls; a short poll is the simplest wait.
        while any(a.submitting for a in self.active.values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    # --- notifications ----------------------------------------------------------------------------
    async def _sqs_loop(self) -> None:
        url = self.settings.sagemaker_notify_queue_url
        while True:
            try:
                answer = await asyncio.to_thread(
                    self._sqs.receive_message,
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=SQS_WAIT_S,
                )
                for msg in answer.get("Messages", []):
                    if await self._on_message(msg.get("Body", "")):
                        await asyncio.to_thread(
                            self._sqs.delete_message, QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"]
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("SQS %s: %s; retrying", url, exc)
                await asyncio.sleep(SQS_ERROR_BACKOFF_S)

    async def _on_message(self, body: str) -> bool:
        """Wake the job a notification names; True when the message may be deleted."""
        note = parse_notification(body)
        if note is None:
            logger.warning("SQS: not a SageMaker notification, dropped: %.200s", body)
            return True
        job_id = str(note["inferenceId"])
        params = note.get("responseParameters") or {}
        a = self.active.get(job_id)
        if a is not None and not a.lease_lost:
            if isinstance(params.get("outputLocation"), str):
                a.output_hints.add(params["outputLocation"])
            if isinstance(params.get("failureLocation"), str):
                a.failure_hints.add(params["failureLocation"])
            a.failure_reason = str(note.get("failureReason") or a.failure_reason)
            a.wake.set()
            return True
        status = await self.ctx.job_status(job_id)
        # Held by another dispatcher: leave it to come back to that one (its S3 check covers a loss).
        return status is None or status != JobStatus.running

    # --- jobs ---------------------------------------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        await self._follow_guarded(Active(job), self._invoke_and_follow)

    async def resume_job(self, job: Job) -> None:
        await self._follow_guarded(Active(job), self._invoke_and_follow)

    async def _invoke_and_follow(self, a: Active) -> None:
        # A live invocation (accepted, or an intent of unknown outcome) is never repeated blindly, even
        # for a job claimed afresh.
        live = [i for i in self._invocations(a.job) if i.get("state") != "refused"]
        if not live and not await self._invoke(a):
            return
        await self._follow(a)

    @staticmethod
    def _invocations(job: Job) -> list[dict[str, Any]]:
        invs = (job.external or {}).get("invocations") or []
        return [dict(i) for i in invs if isinstance(i, dict)]

    # --- invoking -----------------------------------------------------------------------------------
    def _predicted(self, job_id: str, filename: str) -> tuple[str, str]:
        s = self.settings
        return (
            f"s3://{self.bucket}/{s.sagemaker_output_prefix}{job_id}/{filename}",
            f"s3://{self.bucket}/{s.sagemaker_failure_prefix}{job_id}/{filename}",
        )

    async def _put_input(self, job_id: str, payload: dict[str, Any]) -> str:
        key = f"{self.settings.sagemaker_jobs_prefix}{job_id}/{INPUT_NAME}"
        body = json.dumps(payload, separators=(",", ":")).encode()
        await asyncio.to_thread(
            self._s3.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ServerSideEncryption="aws:kms",
        )
        return f"s3://{self.bucket}/{key}"

    async def _invoke(self, a: Active) -> bool:
        """One more invocation of the job; False when the job ended or went back to the queue instead."""
        a.submitting = True
        try:
            return await self._invoke_once(a)
        finally:
            a.submitting = False

    async def _invoke_once(self, a: Active) -> bool:
        prepared = await self._prepare(a)
        if prepared is None:
            return False
        input_uri, graph = prepared
        job = a.job
        invs = self._invocations(job)
        filename = f"invocation-{len(invs) + 1}.json"
        output, failure = self._predicted(job.id, filename)
        inv: dict[str, Any] = {
            "at": _now_iso(),
            "inference_id": job.id,
            "filename": filename,
            "output_location": output,
            "failure_location": failure,
            "state": "intent",
        }
        external = {**(job.external or {}), "input": input_uri, "invocations": [*invs, inv]}
        held = await self.ctx.submitted(job.id, graph, external)
        if held is None:
            return False
        a.job = held
        return await self._call(a, inv, external)

    async def _prepare(self, a: Active) -> tuple[str, dict[str, Any]] | None:
        """Checks, then the request's input on S3: (its URI, the graph), or None when the job ended."""
        from botocore.exceptions import BotoCoreError, ClientError

        job = a.job
        if a.cancel_requested:
            await self.ctx.cancelled(job.id)
            return None
        if job.attempts >= self.settings.max_attempts:
            msg = f"SageMaker returned no result for {job.attempts} invocations; giving up."
            await self.ctx.fail(job.id, "sagemaker_no_result", msg)
            return None
        try:
            request = await self.ctx.render_request(job)
        except InvalidJob as exc:
            await self.ctx.fail(job.id, "invalid_job", str(exc))
            return None
        try:
            return await self._put_input(job.id, request.payload()), request.graph
        except (BotoCoreError, ClientError) as exc:
            logger.warning("job %s: input upload failed (%s); back to the queue", job.id, exc)
            self._back_off()
            await self.ctx.release(job.id, "SageMaker input upload failed", INVOKE_BACKOFF_S)
            return None

    async def _call(self, a: Active, inv: dict[str, Any], external: dict[str, Any]) -> bool:
        """InvokeEndpointAsync for the recorded intent `inv`, then its answer recorded on the job."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
        )

        job = a.job
        try:
            answer = await asyncio.to_thread(
                self._runtime.invoke_endpoint_async,
                EndpointName=self.name,
                InputLocation=external["input"],
                InferenceId=job.id,
                ContentType="application/json",
                Accept="application/json",
                S3OutputPathExtension=job.id,
                Filename=inv["filename"],
                InvocationTimeoutSeconds=self.settings.sagemaker_invocation_timeout_s,
                RequestTTLSeconds=self.settings.sagemaker_request_ttl_s,
            )
        except (ClientError, EndpointConnectionError, ConnectTimeoutError) as exc:
            # An error answer (or no connection at all): nothing was queued at SageMaker.
            logger.warning("job %s: SageMaker refused the invocation: %s", job.id, exc)
            inv["state"] = "refused"
            await self.ctx.external(job.id, external)
            self._back_off()
            await self.ctx.release(job.id, f"SageMaker refused: {exc}", INVOKE_BACKOFF_S)
            return False
        except BotoCoreError as exc:
            # Sent, but no answer (read timeout...): maybe queued; the follow loop finds out.
            logger.warning("job %s: invocation outcome unknown (%s); following it", job.id, exc)
            return True
        inv.update(
            state="accepted",
            output_location=answer.get("OutputLocation") or inv["output_location"],
            failure_location=answer.get("FailureLocation") or inv["failure_location"],
        )
        a.invoked_mono = time.monotonic()
        recorded = await self.ctx.external(job.id, external)
        if recorded is None:
            return False
        a.job = recorded
        logger.info(
            "job %s invoked on %s", job.id, self.name, extra={"action": "job_submitted", "job_id": job.id}
        )
        return await self.ctx.started(job.id)

    def _back_off(self) -> None:
        self.unavailable_until = time.monotonic() + UNAVAILABLE_S

    # --- following ----------------------------------------------------------------------------------
    def _wait_s(self, job: Job) -> float:
        """Until the next S3 check: the poll interval, or sooner when the last invocation expires."""
        invs = [i for i in self._invocations(job) if i.get("state") != "refused"]
        if not invs:
            return 0.0
        left = self._expiry_s() - _age_s(str(invs[-1].get("at", "")))
        return max(0.0, min(self.settings.sagemaker_poll_s, left))

    def _expiry_s(self) -> float:
        s = self.settings
        return s.sagemaker_request_ttl_s + s.sagemaker_invocation_timeout_s + EXPIRY_GRACE_S

    async def _follow(self, a: Active) -> None:
        check_now = True
        while not a.lease_lost:
            if not check_now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(a.wake.wait(), self._wait_s(a.job))
                a.wake.clear()
            check_now = False
            if a.lease_lost:
                return
            if await self._check(a):
                return

    async def _check(self, a: Active) -> bool:
        """Look for the job's result on S3; True when the job reached its end here."""
        invs = [i for i in self._invocations(a.job) if i.get("state") != "refused"]
        outputs = [*(str(i["output_location"]) for i in reversed(invs)), *sorted(a.output_hints)]
        failures = [*(str(i["failure_location"]) for i in reversed(invs)), *sorted(a.failure_hints)]
        for uri in dict.fromkeys(outputs):
            body = await self._get(uri)
            if body is not None:
                return await self._collect(a, body)
        for uri in dict.fromkeys(failures):
            body = await self._get(uri)
            if body is not None:
                return await self._failed(a, body)
        if invs and _age_s(str(invs[-1].get("at", ""))) < self._expiry_s():
            return False
        if a.cancel_requested:
            await self.ctx.cancelled(a.job.id)
            return True
        logger.warning(
            "job %s: no result from SageMaker within TTL + timeout; invoking again",
            a.job.id,
            extra={"action": "job_resubmitted", "job_id": a.job.id},
        )
        return not await self._invoke(a)

    async def _get(self, uri: str) -> bytes | None:
        """The object at `uri`, or None while there is none (HEAD first: most checks find nothing)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            bucket, key = split_s3_uri(uri)
        except ValueError:
            return None
        try:
            await asyncio.to_thread(self._s3.head_object, Bucket=bucket, Key=key)
            obj = await asyncio.to_thread(self._s3.get_object, Bucket=bucket, Key=key)
            data: bytes = await asyncio.to_thread(obj["Body"].read)
            return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                logger.warning("S3 %s: %s", uri, exc)
            return None
        except BotoCoreError as exc:
            logger.warning("S3 %s: %s", uri, exc)
            return None

    async def _collect(self, a: Active, body: bytes) -> bool:
        job = a.job
        if a.cancel_requested:
            await self.ctx.cancelled(job.id)
            return True
        try:
            answer = json.loads(body)
            outputs = [
                RenderOutput(
                    base64.b64decode(img["png_base64"], validate=True),
                    int(img.get("index", n)),
                    None if img.get("node_id") is None else str(img["node_id"]),
                )
                for n, img in enumerate(answer.get("images") or [])
            ]
            render_s = float((answer.get("timings") or {}).get("render_s") or 0.0)
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
            msg = f"SageMaker returned an unreadable result: {exc}"
            await self.ctx.fail(job.id, "sagemaker_bad_output", msg)
            return True
        outputs.sort(key=lambda o: o.index)
        await self.ctx.complete(job, outputs, render_s or time.monotonic() - a.invoked_mono)
        return True

    async def _failed(self, a: Active, body: bytes) -> bool:
        job = a.job
        if a.cancel_requested:
            await self.ctx.cancelled(job.id)
            return True
        message = a.failure_reason or "The SageMaker endpoint failed the render."
        error: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            error = dict(json.loads(body).get("error") or {})
            if error.get("message"):
                message = str(error["message"])
        node_id, node_type = error.get("node_id"), error.get("node_type")
        await self.ctx.fail(
            job.id,
            "sagemaker_failed",
            message,
            node_id=None if node_id is None else str(node_id),
            node_type=None if node_type is None else str(node_type),
        )
        return True
