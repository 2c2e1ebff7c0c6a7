"""A stand-in for SageMaker asynchronous inference, on loopback, for the backend's tests and bench/.

moto emulates SageMaker's control plane, S3, SNS and SQS, but its `invoke_endpoint_async` ignores the
input. This stand-in answers boto3's `sagemaker-runtime` InvokeEndpointAsync
(`POST /endpoints/{EndpointName}/async-invocations`, 202 with InferenceId and the
X-Amzn-SageMaker-OutputLocation / -FailureLocation headers) and then does what SageMaker would, one
request at a time as one instance with MaxConcurrentInvocationsPerInstance=1: reads the input object
from moto's S3, POSTs it to the adapter's /invocations, writes the answer to the output location (2xx)
or the failure location, and publishes SageMaker's notification to the endpoint's SNS topic (moto
delivers it to the SQS queue). The endpoint's output paths and topics come from moto's control plane.

    aws = create_overflow_endpoint(moto_url)                    # bucket, topics, queue, endpoint in moto
    standin = SageMakerAsyncStandIn(moto_url, adapter.url).start()
    ... settings: SAGEMAKER_RUNTIME_ENDPOINT_URL=standin.url, AWS_ENDPOINT_URL=moto_url, aws.settings()
    standin.invocations[job_id]                                 # InvokeEndpointAsync calls per InferenceId

Fault knobs (attributes, set from the test): `delay_s` before each request runs, `drop_next` requests
accepted and never run (no output, no notification: the TTL path), `reject_next` invocations answered
503 ServiceUnavailable, `on_invoke(inference_id)` run once a request is accepted and queued, before the
answer goes back (a test SIGKILLs the calling dispatcher there: invoked, but its answer never recorded).
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import httpx

from tests.support.aws import REGION, MotoServer

logger = logging.getLogger(__name__)

INSTANCE_TYPE = "ml.g4dn.xlarge"  # moto refuses ml.g5.*
ADAPTER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class OverflowEndpoint:
    """What `create_overflow_endpoint` made in moto (the stack's SageMaker overflow resources)."""

    endpoint_name: str
    bucket: str
    queue_url: str
    success_topic: str
    error_topic: str

    def settings(self) -> dict[str, Any]:
        """Backend settings for this endpoint (add the endpoint URLs and timings)."""
        return {
            "sagemaker_endpoint_name": self.endpoint_name,
            "sagemaker_bucket": self.bucket,
            "sagemaker_notify_queue_url": self.queue_url,
            "sagemaker_region": REGION,
        }


def create_overflow_endpoint(
    endpoint_url: str,
    endpoint_name: str = "studio-render",
    bucket: str = "studio-models",
    visibility_timeout_s: int = 2,
) -> OverflowEndpoint:
    """Bucket, SNS topics → SQS queue (raw delivery, as the stack), model, config and endpoint, in moto.

    The queue's visibility timeout is short (the stack's is 120 s) so that a notification one dispatcher
    leaves for another comes back quickly."""
    moto = MotoServer(endpoint_url)
    s3, sns, sqs, sm = (moto.client(s) for s in ("s3", "sns", "sqs", "sagemaker"))
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(
        QueueName=f"{endpoint_name}-notify", Attributes={"VisibilityTimeout": str(visibility_timeout_s)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topics = []
    for suffix in ("success", "error"):
        arn = sns.create_topic(Name=f"{endpoint_name}-{suffix}")["TopicArn"]
        sns.subscribe(
            TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
        )
        topics.append(arn)
    sm.create_model(
        ModelName=endpoint_name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/studio-sagemaker",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/studio-adapter:test"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=endpoint_name,
        ProductionVariants=[
            {
                "VariantName": "main",
                "ModelName": endpoint_name,
                "InitialInstanceCount": 1,
                "InstanceType": INSTANCE_TYPE,
            }
        ],
        AsyncInferenceConfig={
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
            "OutputConfig": {
                "S3OutputPath": f"s3://{bucket}/jobs-output/",
                "S3FailurePath": f"s3://{bucket}/jobs-failure/",
                "NotificationConfig": {"SuccessTopic": topics[0], "ErrorTopic": topics[1]},
            },
        },
    )
    sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=endpoint_name)
    return OverflowEndpoint(endpoint_name, bucket, queue_url, topics[0], topics[1])


@dataclass(frozen=True)
class Request:
    endpoint_name: str
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str
    timeout_s: float
    received_at: str


def _split(uri: str) -> tuple[str, str]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return bucket, key


class SageMakerAsyncStandIn:
    def __init__(self, aws_endpoint_url: str, adapter_url: str) -> None:
        self.aws_endpoint_url = aws_endpoint_url
        self.adapter_url = adapter_url.rstrip("/")
        self.invocations: collections.Counter[str] = collections.Counter()
        self.processed: collections.Counter[str] = collections.Counter()  # requests posted to the adapter
        self.delay_s = 0.0
        self.drop_next = 0
        self.reject_next = 0
        self.on_invoke: Callable[[str], object] | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._busy = 0
        moto = MotoServer(aws_endpoint_url)
        self._s3, self._sns, self._sm = moto.client("s3"), moto.client("sns"), moto.client("sagemaker")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SageMakerAsyncStandIn:
        for target, name in ((self._server.serve_forever, "http"), (self._work, "worker")):
            thread = threading.Thread(target=target, name=f"sagemaker-standin-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=ADAPTER_TIMEOUT_S)

    def is_idle(self) -> bool:
        return self._queue.empty() and self._busy == 0

    # --- the runtime API ----------------------------------------------------------------------------
    def _output_config(self, endpoint_name: str) -> dict[str, Any]:
        endpoint = self._sm.describe_endpoint(EndpointName=endpoint_name)
        config = self._sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        out: dict[str, Any] = config["AsyncInferenceConfig"]["OutputConfig"]
        return out

    def invoke(
        self, endpoint_name: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, headers, body) of one InvokeEndpointAsync."""
        inference_id = headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        with self._lock:
            if self.reject_next > 0:
                self.reject_next -= 1
                error = {"message": "the stand-in refused this invocation (fault injection)"}
                return 503, {"x-amzn-ErrorType": "ServiceUnavailable"}, error
            self.invocations[inference_id] += 1
            drop = self.drop_next > 0
            self.drop_next -= int(drop)
        try:
            config = self._output_config(endpoint_name)
        except Exception as exc:
            return (
                400,
                {"x-amzn-ErrorType": "ValidationError"},
                {"message": f"Endpoint {endpoint_name}: {exc}"},
            )
        extension = headers.get("x-amzn-sagemaker-s3outputpathextension", "").strip("/")
        filename = headers.get("x-amzn-sagemaker-filename") or f"{uuid.uuid4()}.out"
        path = f"{extension}/{filename}" if extension else filename
        request = Request(
            endpoint_name=endpoint_name,
            inference_id=inference_id,
            input_location=headers.get("x-amzn-sagemaker-inputlocation", ""),
            output_location=config["S3OutputPath"].rstrip("/") + "/" + path,
            failure_location=config["S3FailurePath"].rstrip("/") + "/" + path,
            timeout_s=float(headers.get("x-amzn-sagemaker-invocationtimeoutseconds") or 900),
            received_at=datetime.now(UTC).isoformat(),
        )
        if not drop:
            self._queue.put(request)
        if self.on_invoke is not None:
            self.on_invoke(inference_id)
        answer_headers = {
            "X-Amzn-SageMaker-OutputLocation": request.output_location,
            "X-Amzn-SageMaker-FailureLocation": request.failure_location,
        }
        return 202, answer_headers, {"InferenceId": inference_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "async-invocations":
                    status, headers, body = (
                        404,
                        {"x-amzn-ErrorType": "UnknownOperation"},
                        {"message": self.path},
                    )
                else:
                    lower = {k.lower(): v for k, v in self.headers.items()}
                    status, headers, body = standin.invoke(unquote(parts[1]), lower)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("stand-in: " + format, *args)

        return Handler

    # --- the instance -------------------------------------------------------------------------------
    def _work(self) -> None:
        while (request := self._queue.get()) is not None:
            self._busy += 1
            try:
                if self.delay_s:
                    time.sleep(self.delay_s)
                self._run(request)
            except Exception:
                logger.exception("stand-in: request %s failed", request.inference_id)
            finally:
                self._busy -= 1

    def _run(self, request: Request) -> None:
        bucket, key = _split(request.input_location)
        payload = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        self.processed[request.inference_id] += 1
        try:
            r = httpx.post(
                f"{self.adapter_url}/invocations",
                content=payload,
                headers={"Content-Type": "application/json"},
                timeout=min(request.timeout_s, ADAPTER_TIMEOUT_S),
            )
            status, body = r.status_code, r.content
        except httpx.HTTPError as exc:
            status, body = 500, json.dumps({"error": {"code": "unreachable", "message": str(exc)}}).encode()
        ok = 200 <= status < 300
        location = request.output_location if ok else request.failure_location
        out_bucket, out_key = _split(location)
        self._s3.put_object(Bucket=out_bucket, Key=out_key, Body=body, ContentType="application/json")
        self._notify(request, ok, status)

    def _notify(self, request: Request, ok: bool, status: int) -> None:
        config = self._output_config(request.endpoint_name)["NotificationConfig"]
        note: dict[str, Any] = {
            "awsRegion": REGION,
            "eventTime": datetime.now(UTC).isoformat(),
            "receivedTime": request.received_at,
            "invocationStatus": "Completed" if ok else "Failed",
            "requestParameters": {
                "contentType": "application/json",
                "endpointName": request.endpoint_name,
                "inputLocation": request.input_location,
            },
            "responseParameters": {"contentType": "application/json"},
            "inferenceId": request.inference_id,
            "eventVersion": "1.0",
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
        }
        if ok:
            note["responseParameters"]["outputLocation"] = request.output_location
        else:
            note["responseParameters"]["failureLocation"] = request.failure_location
            note["failureReason"] = (
                f"ClientError: Received server error ({status}) from model. See the SageMaker Endpoint logs."
            )
        topic = config["SuccessTopic"] if ok else config["ErrorTopic"]
        self._sns.publish(TopicArn=topic, Message=json.dumps(note))
