"""The CloudFormation stack, checked by real tools (cfn-lint, checkov) and by reading its rules.

Most checks read the stack CloudFormation would create for a set of parameters: `stack()` evaluates the
Conditions from the parameters' defaults (plus overrides), drops the resources whose condition is false
and resolves every `Fn::If`. The network, host and IAM rules are checked on the default stack, on the
stack with the SageMaker overflow enabled and on the one served over HTTPS, so turning either on cannot
open anything the default keeps shut.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

from backend.config import ComfyInstance, Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudformation" / "template.yaml"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
VPC_CIDR = ipaddress.IPv4Network("172.16.0.0/16")
OVERFLOW = "EnableSageMakerOverflow"
OVERFLOW_ON = {"SageMakerOverflow": "true"}
HTTPS = "ServeHttps"
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
HTTPS_ON = {"CertificateArn": CERTIFICATE}
DATABASE_ON = {"DatabaseHost": "db.internal"}
COGNITO_ON = HTTPS_ON | {
    "CognitoUserPool": "true",
    "CognitoDomainPrefix": "studio-example",
    "StudioPublicUrl": "https://studio.example.com",
}
SECRET_CONDITIONS = {
    "CreateDatabaseSecret": "DatabaseSecret",
    "CreateCognitoUserPool": "UserPool",
}
VARIANTS = pytest.mark.parametrize(
    "overrides", [{}, OVERFLOW_ON, HTTPS_ON], ids=["default", "overflow", "https"]
)
SAGEMAKER_SETTINGS = {
    "SAGEMAKER_ENDPOINT_NAME",
    "SAGEMAKER_NOTIFY_QUEUE_URL",
    "SAGEMAKER_BUCKET",
    "SAGEMAKER_JOBS_PREFIX",
}
# What a rendered UserData gets for each ${...} of its Fn::Sub; a name missing here fails the test.
SAMPLE_VALUES = {
    "AWS::Region": "eu-west-1",
    "ProjectRepositoryUrl": "https://git.example.com/studio.git",
    "ProjectVersion": "v1.4.0",
    "ModelsBucket": "studio-modelsbucket-abc123",
    "MlInstance.PrivateIp": "172.16.10.25",
    "RenderEndpoint.EndpointName": "RenderEndpoint-xyz",
    "RenderNotifyQueue": "https://sqs.eu-west-1.amazonaws.com/123456789012/studio-RenderNotifyQueue-abc",
    "DatabaseSecret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:DatabaseSecret-AbCdEf",
    "UserPool": "eu-west-1_AbCdEfGhI",
    "UserPoolClient": "1example23456789abcdefghij",
}
NO_VALUE = object()


# ------------------------------------------------------------------ reading the template


@cache
def template() -> dict[str, Any]:
    parsed, matches = decode_str(TEMPLATE.read_text())
    assert not matches, matches
    return dict(parsed)


def condition_values(overrides: dict[str, str]) -> dict[str, bool]:
    parameters = {name: p.get("Default") for name, p in template()["Parameters"].items()} | overrides
    definitions = template().get("Conditions", {})

    def evaluate(expr: Any) -> Any:
        if not isinstance(expr, dict):
            return expr
        ((function, args),) = expr.items()
        if function == "Ref":
            return parameters[args]
        if function == "Condition":
            return evaluate(definitions[args])
        if function == "Fn::Equals":
            return str(evaluate(args[0])) == str(evaluate(args[1]))
        if function == "Fn::Not":
            return not evaluate(args[0])
        if function == "Fn::And":
            return all(evaluate(a) for a in args)
        if function == "Fn::Or":
            return any(evaluate(a) for a in args)
        raise AssertionError(f"unsupported in a condition: {function}")

    return {name: bool(evaluate(expr)) for name, expr in definitions.items()}


def resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """`value` as CloudFormation sees it: Fn::If decided, AWS::NoValue removed."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, if_true, if_false = value["Fn::If"]
            return resolve(if_true if conditions[name] else if_false, conditions)
        if value == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        resolved = {k: resolve(v, conditions) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}
    if isinstance(value, list):
        return [v for v in (resolve(item, conditions) for item in value) if v is not NO_VALUE]
    return value


@cache
def _stack(overrides: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    conditions = condition_values(dict(overrides))
    kept = {
        section: {
            name: body
            for name, body in template().get(section, {}).items()
            if conditions.get(body.get("Condition", ""), True)
        }
        for section in ("Resources", "Outputs")
    }
    return dict(resolve(kept, conditions))


def stack(overrides: dict[str, str] | None = None) -> dict[str, Any]:
    return _stack(tuple(sorted((overrides or {}).items())))


def resources(kind: str, overrides: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in stack(overrides)["Resources"].items() if v["Type"] == kind}


def props(name: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    return dict(stack(overrides)["Resources"][name].get("Properties", {}))


def ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def statements(role: str, overrides: dict[str, str] | None = None) -> list[dict[str, Any]]:
    policies = props(role, overrides).get("Policies", [])
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions(role: str, overrides: dict[str, str] | None = None) -> set[str]:
    return {a for s in statements(role, overrides) for a in as_list(s["Action"])}


def resources_of(role: str, action: str, overrides: dict[str, str] | None = None) -> list[str]:
    """Every resource `action` is allowed on, as its JSON (the ARNs are Fn::Sub strings)."""
    return sorted(
        json.dumps(r)
        for s in statements(role, overrides)
        if s["Effect"] == "Allow" and action in as_list(s["Action"])
        for r in as_list(s["Resource"])
    )


# ------------------------------------------------------------------ real tools


def test_cfn_lint_finds_nothing() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE), "--regions", "us-east-1", "eu-west-1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def declared_skips(overrides: dict[str, str]) -> list[tuple[str, str, str]]:
    return [
        (name, skip["id"], skip.get("comment", ""))
        for name, resource in stack(overrides)["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


def write_copy(path: Path, overrides: dict[str, str], *, with_skips: bool) -> Path:
    copy = json.loads(json.dumps(template()))
    for name, value in overrides.items():
        copy["Parameters"][name]["Default"] = value
    if not with_skips:
        for resource in copy["Resources"].values():
            resource.get("Metadata", {}).pop("checkov", None)
    path.write_text(json.dumps(copy))
    return path


def test_checkov_finds_nothing_and_every_suppression_is_needed_and_explained(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail("checkov is missing from .venv-checkov: `make test` (or .ci/run) installs it")
    # checkov leaves out the resources whose condition is false under the defaults, so the overflow and
    # the HTTPS load balancer are scanned in copies whose parameters default to them; the copies without
    # suppressions must fail exactly the suppressed checks (a suppression of a passing check is stale).
    # Every file goes by a bare name, scanned from tmp_path: CKV_AWS_46 scans str() of the UserData node,
    # which carries the file's path, so a checkout whose path up to ".../cloudformation/template" is 40
    # letters, digits and slashes long (one CI checkout's was) read as an AWS secret key.
    (tmp_path / TEMPLATE.name).write_bytes(TEMPLATE.read_bytes())
    variants = {
        "default": {},
        "overflow": OVERFLOW_ON,
        "https": HTTPS_ON,
        "database": DATABASE_ON,
        "cognito": COGNITO_ON,
    }
    files = {"default": Path(TEMPLATE.name)}
    for variant, overrides in variants.items():
        if overrides:
            files[variant] = write_copy(tmp_path / f"{variant}.json", overrides, with_skips=True)
        files[f"{variant}-bare"] = write_copy(tmp_path / f"{variant}-bare.json", overrides, with_skips=False)
    # Every framework, the secrets scan included; a canary with a password in a URL (as the old
    # DatabaseUrl description had) proves that scan ran.
    (tmp_path / "canary.yaml").write_text("url: postgresql+psycopg://studio:Kx8vQ2mZ7rLp4Tn9@db/studio\n")
    files["canary"] = Path("canary.yaml")
    files = {name: Path(f.name) for name, f in files.items()}
    command = [str(CHECKOV), *(a for f in files.values() for a in ("-f", str(f)))]
    command += ["--compact", "--quiet", "--skip-download", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    output = json.loads(done.stdout)
    reports = output if isinstance(output, list) else [output]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    failed: dict[str, set[tuple[str, str]]] = {name: set() for name in files}
    failed_checks = [c for r in reports for c in r["results"].get("failed_checks", [])]
    for check in failed_checks:
        (name,) = [n for n, f in files.items() if Path(check["file_path"]).name == f.name]
        failed[name].add((check["resource"].split(".")[-1], check["check_id"]))
    assert [failed[v] for v in variants] == [set()] * len(variants), failed_checks
    assert {check_id for _, check_id in failed["canary"]} == {"CKV_SECRET_4"}
    for variant, overrides in variants.items():
        declared = declared_skips(overrides)
        for name, check_id, comment in declared:
            assert len(comment.strip()) > 20, f"{name}: the suppression of {check_id} needs a reason"
        assert failed[f"{variant}-bare"] == {(name, check_id) for name, check_id, _ in declared}


def test_every_parameter_is_typed_and_described_and_every_output_described() -> None:
    for name, parameter in template()["Parameters"].items():
        assert parameter.get("Type") and len(parameter.get("Description", "")) > 10, name
    for name, output in template()["Outputs"].items():
        assert len(output.get("Description", "")) > 10, name
    assert {"StudioUrl", "ApiUrl", "ModelsBucketName", "MlServerPrivateIp", "NotebookName"} <= set(
        stack()["Outputs"]
    )
    overflow_outputs = set(stack(OVERFLOW_ON)["Outputs"]) - set(stack()["Outputs"])
    assert {"SageMakerEndpointName", "SageMakerNotifyQueueUrl"} <= overflow_outputs
    assert set(stack(HTTPS_ON)["Outputs"]) - set(stack()["Outputs"]) == {"LoadBalancerDnsName"}


def test_sections_follow_the_house_order() -> None:
    order = [k for k in template() if k in {"Parameters", "Mappings", "Conditions", "Resources", "Outputs"}]
    assert order == sorted(order, key=["Parameters", "Mappings", "Conditions", "Resources", "Outputs"].index)


# ------------------------------------------------------------------ network


@VARIANTS
def test_the_vpc_has_public_and_private_subnets_in_two_zones(overrides: dict[str, str]) -> None:
    assert props("Vpc", overrides)["CidrBlock"] == str(VPC_CIDR)
    subnets = resources("AWS::EC2::Subnet", overrides)
    public = {n: p["Properties"] for n, p in subnets.items() if n.startswith("Public")}
    private = {n: p["Properties"] for n, p in subnets.items() if n.startswith("Private")}
    assert len(public) == 2 and len(private) == 2 and len(subnets) == 4
    for group in (public, private):
        zones = [json.dumps(p["AvailabilityZone"]) for p in group.values()]
        assert len(set(zones)) == 2
    networks = [ipaddress.IPv4Network(p["Properties"]["CidrBlock"]) for p in subnets.values()]
    for i, network in enumerate(networks):
        assert network.subnet_of(VPC_CIDR)
        assert not any(network.overlaps(other) for other in networks[i + 1 :])
    for p in subnets.values():
        assert p["Properties"]["MapPublicIpOnLaunch"] is False
    routes = {n: p["Properties"] for n, p in resources("AWS::EC2::Route", overrides).items()}
    table_of = {
        ref(p["Properties"]["SubnetId"]): ref(p["Properties"]["RouteTableId"])
        for p in resources("AWS::EC2::SubnetRouteTableAssociation", overrides).values()
    }
    for subnet in public:
        (route,) = [r for r in routes.values() if ref(r["RouteTableId"]) == table_of[subnet]]
        assert route["DestinationCidrBlock"] == "0.0.0.0/0" and ref(route["GatewayId"]) == "InternetGateway"
    for subnet in private:
        (route,) = [r for r in routes.values() if ref(r["RouteTableId"]) == table_of[subnet]]
        assert route["DestinationCidrBlock"] == "0.0.0.0/0" and ref(route["NatGatewayId"]) == "NatGateway"
        assert "GatewayId" not in route
    assert ref(props("NatGateway", overrides)["SubnetId"]) in public
    endpoint = props("S3GatewayEndpoint", overrides)
    assert endpoint["VpcEndpointType"] == "Gateway" and "${AWS::Region}.s3" in json.dumps(endpoint)
    assert {table_of[s] for s in private} <= {ref(t) for t in endpoint["RouteTableIds"]}


def ingress_rules(overrides: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    rules = [
        (n, r)
        for n, p in resources("AWS::EC2::SecurityGroup", overrides).items()
        for r in p["Properties"].get("SecurityGroupIngress", [])
    ]
    rules += [
        (ref(p["Properties"]["GroupId"]) or "", p["Properties"])
        for p in resources("AWS::EC2::SecurityGroupIngress", overrides).values()
    ]
    return rules


@VARIANTS
def test_comfyui_is_reachable_only_from_the_backend_on_8188_and_8189(overrides: dict[str, str]) -> None:
    ml = [r for group, r in ingress_rules(overrides) if group == "MlSecurityGroup"]
    assert sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ml) == [
        ("tcp", 8188, 8188),
        ("tcp", 8189, 8189),
    ]
    for rule in ml:
        assert ref(rule["SourceSecurityGroupId"]) == "BackendSecurityGroup"
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule)
    assert "SecurityGroupIngress" not in props("MlSecurityGroup", overrides)
    assert "SecurityGroupIngress" not in props("NotebookSecurityGroup", overrides)
    assert ref(props("MlInstance", overrides)["SecurityGroupIds"][0]) == "MlSecurityGroup"


@VARIANTS
def test_the_backend_admits_only_the_ui_and_api_from_the_allowed_cidr_and_nobody_gets_ssh(
    overrides: dict[str, str],
) -> None:
    backend = [r for group, r in ingress_rules(overrides) if group == "BackendSecurityGroup"]
    assert sorted(r["FromPort"] for r in backend) == [8000, 8501]
    # From the studio's network, or only from the HTTPS load balancer when there is one.
    https = overrides == HTTPS_ON
    key, source = (
        ("SourceSecurityGroupId", "LoadBalancerSecurityGroup") if https else ("CidrIp", "AllowedCidr")
    )
    for rule in backend:
        assert ref(rule.get(key)) == source, rule
        assert (
            rule["FromPort"] == rule["ToPort"] and len({"CidrIp", "SourceSecurityGroupId"} & set(rule)) == 1
        )
    outside = [
        r for group, r in ingress_rules(overrides) if "CidrIp" in r and ref(r["CidrIp"]) == "AllowedCidr"
    ]
    assert sorted(r["FromPort"] for r in outside) == ([80, 443] if https else [8000, 8501])
    for _, rule in ingress_rules(overrides):
        assert rule.get("CidrIp") != "0.0.0.0/0" and "CidrIpv6" not in rule
        assert rule["IpProtocol"] == "tcp" and not (rule["FromPort"] <= 22 <= rule["ToPort"]), rule
    cidr = template()["Parameters"]["AllowedCidr"]
    assert "Default" not in cidr  # whoever deploys names the network; nothing opens by default
    assert re.fullmatch(cidr["AllowedPattern"], "203.0.113.0/24")
    assert not any(re.fullmatch(cidr["AllowedPattern"], v) for v in ("203.0.113.7", "::/0", "10.0.0.0/33"))
    assert not resources("AWS::EC2::KeyPair", overrides)
    assert all("KeyName" not in p["Properties"] for p in resources("AWS::EC2::Instance", overrides).values())


def test_https_puts_a_tls_load_balancer_in_front_of_the_ui_and_the_api_and_nothing_else() -> None:
    everything = template()["Resources"]
    https_only = {n for n, r in everything.items() if r.get("Condition") == HTTPS}
    assert {everything[n]["Type"] for n in https_only} == {
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::ListenerRule",
    }
    assert template()["Parameters"]["CertificateArn"]["Default"] == "none"  # the default stack has none
    assert not resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    pattern = template()["Parameters"]["CertificateArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, CERTIFICATE) and not re.fullmatch(
        pattern, "arn:aws:iam::1:server-certificate/x"
    )

    ((lb_name, lb),) = resources("AWS::ElasticLoadBalancingV2::LoadBalancer", HTTPS_ON).items()
    lb = lb["Properties"]
    assert lb["Scheme"] == "internet-facing" and lb["Type"] == "application"
    assert sorted(ref(s) for s in lb["Subnets"]) == ["PublicSubnetA", "PublicSubnetB"]
    assert [ref(g) for g in lb["SecurityGroups"]] == ["LoadBalancerSecurityGroup"]
    attributes = {a["Key"]: a["Value"] for a in lb["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert int(attributes["idle_timeout.timeout_seconds"]) >= 120  # progress streams stay open

    lb_group = props("LoadBalancerSecurityGroup", HTTPS_ON)
    assert sorted((r["FromPort"], ref(r["CidrIp"])) for r in lb_group["SecurityGroupIngress"]) == [
        (80, "AllowedCidr"),
        (443, "AllowedCidr"),
    ]
    assert "SecurityGroupEgress" not in lb_group  # only the two rules below: no egress to the world
    egress = [p["Properties"] for p in resources("AWS::EC2::SecurityGroupEgress", HTTPS_ON).values()]
    assert sorted(
        (ref(e["GroupId"]), e["FromPort"], e["ToPort"], ref(e["DestinationSecurityGroupId"])) for e in egress
    ) == [
        ("LoadBalancerSecurityGroup", 8000, 8000, "BackendSecurityGroup"),
        ("LoadBalancerSecurityGroup", 8501, 8501, "BackendSecurityGroup"),
    ]
    assert "SecurityGroupIngress" not in props("BackendSecurityGroup", HTTPS_ON)

    listener_of = {
        p["Properties"]["Port"]: n
        for n, p in resources("AWS::ElasticLoadBalancingV2::Listener", HTTPS_ON).items()
    }
    listeners = {port: props(name, HTTPS_ON) for port, name in listener_of.items()}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["Protocol"] == "HTTPS" and ref(https["LoadBalancerArn"]) == lb_name
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")  # TLS 1.2 and 1.3 only
    assert [ref(c["CertificateArn"]) for c in https["Certificates"]] == ["CertificateArn"]
    ((redirect,),) = [listeners[80]["DefaultActions"]]
    assert listeners[80]["Protocol"] == "HTTP" and redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"] == {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}

    groups = {
        n: p["Properties"] for n, p in resources("AWS::ElasticLoadBalancingV2::TargetGroup", HTTPS_ON).items()
    }
    port_of = {n: g["Port"] for n, g in groups.items()}
    for group in groups.values():  # each group is the backend host itself, health-checked
        assert group["Protocol"] == "HTTP" and [ref(t["Id"]) for t in group["Targets"]] == ["BackendInstance"]
        assert group["Targets"][0]["Port"] == group["Port"]
    assert {g["Port"]: g["HealthCheckPath"] for g in groups.values()} == {
        8501: "/_stcore/health",
        8000: "/healthz",
    }
    ((default,),) = [https["DefaultActions"]]
    assert default["Type"] == "forward" and port_of[ref(default["TargetGroupArn"])] == 8501
    rules = resources("AWS::ElasticLoadBalancingV2::ListenerRule", HTTPS_ON)
    rule = rules.pop("ApiListenerRule")["Properties"]
    (share,) = [p["Properties"] for p in rules.values()]  # clients' share links: /s/<token> to the API
    assert share["Conditions"][0]["PathPatternConfig"]["Values"] == ["/s/*"]
    assert share["Actions"] == rule["Actions"] and ref(share["ListenerArn"]) == listener_of[443]
    assert ref(rule["ListenerArn"]) == listener_of[443]
    ((action,),) = [rule["Actions"]]
    assert action["Type"] == "forward" and port_of[ref(action["TargetGroupArn"])] == 8000
    ((condition,),) = [rule["Conditions"]]
    paths = condition["PathPatternConfig"]["Values"]
    assert "/api/*" in paths and "/healthz" in paths and "/metrics" not in paths  # metrics stay inside

    outputs = stack(HTTPS_ON)["Outputs"]
    for name in ("StudioUrl", "ApiUrl"):
        assert outputs[name]["Value"] == {"Fn::Sub": "https://${LoadBalancer.DNSName}"}
        assert stack()["Outputs"][name]["Value"]["Fn::Sub"].startswith("http://${BackendEip}:")
    assert outputs["LoadBalancerDnsName"]["Value"] == {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}


# ------------------------------------------------------------------ hosts


@VARIANTS
def test_instances_backend_public_ml_private_imdsv2_encrypted_disks_ssm(overrides: dict[str, str]) -> None:
    backend, ml = props("BackendInstance", overrides), props("MlInstance", overrides)
    parameters = template()["Parameters"]
    assert (
        ref(backend["InstanceType"]) == "BackendInstanceType" and ref(ml["InstanceType"]) == "MlInstanceType"
    )
    assert parameters["BackendInstanceType"]["Default"] == "t2.medium"
    assert parameters["MlInstanceType"]["Default"] == "g5.xlarge"
    assert ref(backend["SubnetId"]) == "PublicSubnetA" and ref(ml["SubnetId"]) == "PrivateSubnetA"
    # The backend's only public address is its Elastic IP; the ML server has none.
    eips = [
        p["Properties"]
        for p in resources("AWS::EC2::EIP", overrides).values()
        if "InstanceId" in p["Properties"]
    ]
    assert [ref(e["InstanceId"]) for e in eips] == ["BackendInstance"]
    assert not resources("AWS::EC2::EIPAssociation", overrides)
    assert "NetworkInterfaces" not in ml and "NetworkInterfaces" not in backend
    # Each host boots after its way out exists: its UserData downloads at once.
    assert stack(overrides)["Resources"]["MlInstance"]["DependsOn"] == "PrivateDefaultRoute"
    assert stack(overrides)["Resources"]["BackendInstance"]["DependsOn"] == "PublicDefaultRoute"
    for instance, template_name in ((backend, "BackendLaunchTemplate"), (ml, "MlLaunchTemplate")):
        assert ref(instance["LaunchTemplate"]["LaunchTemplateId"]) == template_name
        data = props(template_name, overrides)["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        (disk,) = data["BlockDeviceMappings"]
        assert disk["Ebs"]["Encrypted"] is True and disk["Ebs"]["VolumeType"] == "gp3"
        assert ref(disk["Ebs"]["VolumeSize"]) in {"BackendVolumeSizeGiB", "MlVolumeSizeGiB"}
    for role in ("BackendRole", "MlRole"):
        managed = json.dumps(props(role, overrides)["ManagedPolicyArns"])
        assert "AmazonSSMManagedInstanceCore" in managed
    assert parameters["BackendAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameters["MlAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameters["MlAmiId"]["Default"] == (
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    )
    assert "ubuntu/server/24.04" in parameters["BackendAmiId"]["Default"]


def render_sub(sub: Any, extra: dict[str, str] | None = None) -> str:
    """An Fn::Sub with every ${...} replaced by SAMPLE_VALUES (or its own variables, rendered too)."""
    text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
    values = dict(SAMPLE_VALUES) | (extra or {})
    for name, value in variables.items():
        if isinstance(value, str):
            values[name] = value
        elif "Ref" in value:
            values[name] = values[value["Ref"]]
        else:
            values[name] = render_sub(value["Fn::Sub"], extra)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        assert name in values, f"no sample value for ${{{name}}}"
        return values[name]

    return re.sub(r"\$\{([^}]+)\}", replace, text)


def user_data(instance: str, overrides: dict[str, str] | None = None) -> str:
    defaults = {
        name: str(p["Default"])
        for name, p in template()["Parameters"].items()
        if "Default" in p and name not in SAMPLE_VALUES and not p["Type"].startswith("AWS::")
    }
    sub = props(instance, overrides)["UserData"]["Fn::Base64"]["Fn::Sub"]
    script = render_sub(sub, defaults | (overrides or {}))
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert (done.returncode, done.stderr) == (0, ""), script
    return script


def studio_env(script: str) -> dict[str, str]:
    (block,) = re.findall(r"cat > /etc/studio/studio\.env <<'ENV'\n(.*?)\nENV\n", script, re.DOTALL)
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    env = dict(line.split("=", 1) for line in lines)
    assert len(env) == len(lines), "a setting is written twice"
    return env


def known_settings() -> set[str]:
    example = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    return names | SAGEMAKER_SETTINGS | {"AWS_DEFAULT_REGION"}


@VARIANTS
def test_user_data_installs_the_project_at_the_given_version_with_the_contracts_install_script(
    overrides: dict[str, str],
) -> None:
    for instance, role in (("BackendInstance", "backend"), ("MlInstance", "mlserver")):
        script = user_data(instance, overrides)
        assert script.startswith("#!/bin/bash\n") and "set -euxo pipefail" in script
        steps = [
            "git clone --quiet https://git.example.com/studio.git /opt/studio",
            "git -C /opt/studio fetch --quiet origin v1.4.0",
            "git -C /opt/studio checkout --quiet --detach FETCH_HEAD",
            "cat > /etc/studio/studio.env",
            f"/opt/studio/mlserver/provision/install.sh {role}\n",
        ]
        positions = [script.index(step) for step in steps]
        assert positions == sorted(positions), instance
        assert set(studio_env(script)) <= known_settings(), instance


def test_the_ml_server_syncs_models_from_the_stacks_bucket() -> None:
    assert studio_env(user_data("MlInstance")) == {
        "MODELS_BUCKET": "studio-modelsbucket-abc123",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "LOG_LEVEL": "INFO",
    }


def test_the_backend_reaches_comfyui_at_the_ml_servers_private_ip_and_stores_renders_in_s3() -> None:
    raw = json.dumps(props("BackendInstance")["UserData"])
    assert "COMFY_UI_ADDRESS=text=${MlInstance.PrivateIp}:8188,sketch=${MlInstance.PrivateIp}:8189" in raw
    env = studio_env(user_data("BackendInstance"))
    assert not SAGEMAKER_SETTINGS & set(env)
    # model_validate: the rendered settings alone, not this process's environment or .env
    settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
    assert settings.comfy_instances == [
        ComfyInstance("http://172.16.10.25:8188", frozenset({"text"})),
        ComfyInstance("http://172.16.10.25:8189", frozenset({"sketch"})),
    ]
    assert settings.database_url == "sqlite+aiosqlite:////var/lib/studio/studio.db"
    assert (settings.storage_backend, settings.s3_bucket, settings.s3_region, settings.s3_prefix) == (
        "s3",
        "studio-modelsbucket-abc123",
        "eu-west-1",
        "renders/",
    )
    assert (settings.api_host, settings.api_port, settings.demo_designer_token) == ("0.0.0.0", 8000, "")
    assert env["BACKEND_URL"] == "http://127.0.0.1:8000"


def test_an_external_database_replaces_sqlite_with_a_url_without_password() -> None:
    env = studio_env(user_data("BackendInstance", DATABASE_ON))
    assert env["DATABASE_URL"] == "postgresql+psycopg://studio@db.internal:5432/studio"
    assert env["DATABASE_PASSWORD_SECRET_ARN"] == SAMPLE_VALUES["DatabaseSecret"]
    settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
    assert not settings.is_sqlite and settings.database_password_secret_arn


def test_the_backend_gets_the_sagemaker_settings_only_with_the_overflow() -> None:
    env = studio_env(user_data("BackendInstance", OVERFLOW_ON))
    assert {k: v for k, v in env.items() if k.startswith("SAGEMAKER_")} == {
        "SAGEMAKER_ENDPOINT_NAME": "RenderEndpoint-xyz",
        "SAGEMAKER_NOTIFY_QUEUE_URL": SAMPLE_VALUES["RenderNotifyQueue"],
        "SAGEMAKER_BUCKET": "studio-modelsbucket-abc123",
        "SAGEMAKER_JOBS_PREFIX": "jobs/",
    }
    (settings_if,) = [
        v
        for v in template()["Resources"]["BackendInstance"]["Properties"]["UserData"]["Fn::Base64"][
            "Fn::Sub"
        ][1].values()
        if "SAGEMAKER_" in json.dumps(v)
    ]
    assert settings_if["Fn::If"][0] == OVERFLOW


# ------------------------------------------------------------------ storage and IAM


@VARIANTS
def test_the_bucket_is_private_encrypted_versioned_tls_only_and_expires_old_renders(
    overrides: dict[str, str],
) -> None:
    bucket = props("ModelsBucket", overrides)
    assert all(v is True for v in bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    rules = bucket["LifecycleConfiguration"]["Rules"]
    (renders,) = [r for r in rules if r.get("Prefix") == "renders/"]
    assert ref(renders["ExpirationInDays"]) == "RenderRetentionDays" and renders["Status"] == "Enabled"
    assert all("NoncurrentVersionExpiration" in r for r in rules)
    assert any("AbortIncompleteMultipartUpload" in r and "Prefix" not in r for r in rules)
    jobs_prefixes = {r.get("Prefix") for r in rules} & {"jobs/", "jobs-output/", "jobs-failure/"}
    assert jobs_prefixes == (
        {"jobs/", "jobs-output/", "jobs-failure/"} if overrides == OVERFLOW_ON else set()
    )
    policy = props("ModelsBucketPolicy", overrides)["PolicyDocument"]["Statement"]
    (deny,) = [s for s in policy if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and deny["Action"] == "s3:*"
    assert deny["Principal"] == "*" and len(deny["Resource"]) == 2
    assert not [s for s in policy if s["Effect"] == "Allow"]
    assert ref(bucket["LoggingConfiguration"]["DestinationBucketName"]) == "LogsBucket"
    # Trained LoRAs and renders cannot be remade: the bucket outlives the stack and any replacement.
    body = stack(overrides)["Resources"]["ModelsBucket"]
    assert (body["DeletionPolicy"], body["UpdateReplacePolicy"]) == ("Retain", "Retain")


@VARIANTS
def test_iam_is_least_privilege_per_host(overrides: dict[str, str]) -> None:
    assert actions("MlRole", overrides) == {"s3:GetObject", "s3:ListBucket"}  # the ML server writes nothing
    assert resources_of("MlRole", "s3:GetObject", overrides) == [
        '{"Fn::Sub": "${ModelsBucket.Arn}/loras/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/models/*"}',
    ]
    backend_puts = resources_of("BackendRole", "s3:PutObject", overrides)
    # Renders, and the models leads add (never the base models or the published LoRAs).
    expected = [
        '{"Fn::Sub": "${ModelsBucket.Arn}/models/added/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/models/manifest.added.json"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/renders/*"}',
    ]
    if overrides == OVERFLOW_ON:
        expected.insert(0, '{"Fn::Sub": "${ModelsBucket.Arn}/jobs/*"}')
    assert backend_puts == expected
    assert resources_of("NotebookRole", "s3:PutObject", overrides) == [
        '{"Fn::Sub": "${ModelsBucket.Arn}/loras/*"}'
    ]
    notebook_reads = resources_of("NotebookRole", "s3:GetObject", overrides)
    assert {"datasets", "models", "loras"} == {re.findall(r"Arn}/(\w+)/", r)[0] for r in notebook_reads}
    for role in resources("AWS::IAM::Role", overrides):
        assert not any(a == "*" or a.endswith(":*") for a in actions(role, overrides)), role
        for statement in statements(role, overrides):
            if statement["Resource"] == "*":
                assert set(as_list(statement["Action"])) <= {
                    "ecr:GetAuthorizationToken",
                    "cloudwatch:PutMetricData",
                }


def test_the_notebook_trains_loras_with_the_projects_lifecycle_script() -> None:
    notebook = props("LoraNotebook")
    assert notebook["DirectInternetAccess"] == "Disabled" and notebook["RootAccess"] == "Disabled"
    assert str(ref(notebook["SubnetId"])).startswith("Private")
    assert ref(notebook["InstanceType"]) == "NotebookInstanceType"
    assert template()["Parameters"]["NotebookInstanceType"]["Default"] == "ml.g5.xlarge"
    (on_start,) = props("NotebookLifecycleConfig")["OnStart"]
    assert on_start["Content"]["Fn::Base64"] == (ROOT / "loras" / "notebook_lifecycle.sh").read_text()
    assert notebook["LifecycleConfigName"]["Fn::GetAtt"][0] == "NotebookLifecycleConfig"


# ------------------------------------------------------------------ SageMaker overflow

OVERFLOW_TYPES = (
    "AWS::SageMaker::Model",
    "AWS::SageMaker::Endpoint",
    "AWS::SageMaker::EndpointConfig",
    "AWS::SNS::",
    "AWS::SQS::",
    "AWS::ApplicationAutoScaling::",
    "AWS::CloudWatch::Alarm",
    "AWS::KMS::",
)


def test_the_overflow_exists_only_under_its_condition_and_leaves_the_default_stack_alone() -> None:
    everything = template()["Resources"]
    assert {r["Condition"] for r in everything.values() if "Condition" in r} == {
        OVERFLOW,
        HTTPS,
        *SECRET_CONDITIONS,
    }
    conditional = {n for n, r in everything.items() if r.get("Condition") == OVERFLOW}
    https_only = {n for n, r in everything.items() if r.get("Condition") in {HTTPS, *SECRET_CONDITIONS}}
    overflow_typed = {
        n
        for n, r in everything.items()
        if r["Type"].startswith(OVERFLOW_TYPES) and r.get("Condition") not in SECRET_CONDITIONS
    }
    assert overflow_typed <= conditional  # the secrets' key is the secrets' (test_secrets.py)
    assert "RenderModelRole" in conditional
    assert set(stack()["Resources"]) == set(everything) - conditional - https_only
    assert set(stack(OVERFLOW_ON)["Resources"]) == set(everything) - https_only
    assert template()["Parameters"]["SageMakerOverflow"]["Default"] == "false"
    for name in set(everything) - conditional - https_only:  # the default stack reads nothing of the overflow
        assert not re.search(
            r"Render(Endpoint|Notify|Model|Success|Error)|OverflowKey", json.dumps(stack()["Resources"][name])
        )
    rule = template()["Rules"]["SageMakerOverflowNeedsAnImage"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "SageMakerOverflow"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SageMakerImageUri"}, "none"]}]
    }


def test_the_endpoint_is_asynchronous_one_render_per_instance_and_notifies_both_topics() -> None:
    config = props("RenderEndpointConfig", OVERFLOW_ON)
    (variant,) = config["ProductionVariants"]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] >= 600
    assert ref(variant["InstanceType"]) == "SageMakerInstanceType"
    assert template()["Parameters"]["SageMakerInstanceType"]["Default"] == "ml.g5.xlarge"
    assert variant["ModelName"] == {"Fn::GetAtt": ["RenderModel", "ModelName"]}
    async_config = config["AsyncInferenceConfig"]
    assert async_config["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 1}
    output = async_config["OutputConfig"]
    assert output["S3OutputPath"] == {"Fn::Sub": "s3://${ModelsBucket}/jobs-output/"}
    assert output["S3FailurePath"] == {"Fn::Sub": "s3://${ModelsBucket}/jobs-failure/"}
    assert output["NotificationConfig"] == {
        "SuccessTopic": {"Ref": "RenderSuccessTopic"},
        "ErrorTopic": {"Ref": "RenderErrorTopic"},
    }
    endpoint = props("RenderEndpoint", OVERFLOW_ON)
    assert endpoint["EndpointConfigName"] == {"Fn::GetAtt": ["RenderEndpointConfig", "EndpointConfigName"]}
    container = props("RenderModel", OVERFLOW_ON)["PrimaryContainer"]
    assert ref(container["Image"]) == "SageMakerImageUri" and "ModelDataUrl" not in container
    with_data = props("RenderModel", OVERFLOW_ON | {"SageMakerModelDataUrl": "s3://b/models/m.tar.gz"})
    assert ref(with_data["PrimaryContainer"]["ModelDataUrl"]) == "SageMakerModelDataUrl"


def test_the_endpoint_role_reads_models_loras_and_requests_and_writes_only_results() -> None:
    role = "RenderModelRole"
    assert resources_of(role, "s3:GetObject", OVERFLOW_ON) == [
        '{"Fn::Sub": "${ModelsBucket.Arn}/jobs/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/loras/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/models/*"}',
    ]
    assert resources_of(role, "s3:PutObject", OVERFLOW_ON) == [
        '{"Fn::Sub": "${ModelsBucket.Arn}/jobs-failure/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/jobs-output/*"}',
    ]
    assert {a for a in actions(role, OVERFLOW_ON) if a.startswith("s3:")} == {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }
    assert resources_of(role, "sns:Publish", OVERFLOW_ON) == [
        '{"Ref": "RenderErrorTopic"}',
        '{"Ref": "RenderSuccessTopic"}',
    ]
    trust = props(role, OVERFLOW_ON)["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "sagemaker.amazonaws.com"}]


def test_the_backend_may_invoke_only_this_endpoint_and_read_only_its_queue() -> None:
    assert not {a for a in actions("BackendRole") if a.split(":")[0] in {"sagemaker", "sqs", "kms"}}
    sagemaker = [s for s in statements("BackendRole", OVERFLOW_ON) if "sagemaker:" in json.dumps(s["Action"])]
    assert sagemaker == [
        {"Effect": "Allow", "Action": "sagemaker:InvokeEndpointAsync", "Resource": {"Ref": "RenderEndpoint"}}
    ]
    (sqs,) = [s for s in statements("BackendRole", OVERFLOW_ON) if "sqs:" in json.dumps(s["Action"])]
    assert set(sqs["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    assert sqs["Resource"] == {"Fn::GetAtt": ["RenderNotifyQueue", "Arn"]}
    assert resources_of("BackendRole", "s3:GetObject", OVERFLOW_ON) == [
        '{"Fn::Sub": "${ModelsBucket.Arn}/jobs-failure/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/jobs-output/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/jobs/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/loras/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/models/*"}',
        '{"Fn::Sub": "${ModelsBucket.Arn}/renders/*"}',
    ]


def test_notifications_reach_only_the_backends_encrypted_queue() -> None:
    topics = {"RenderSuccessTopic", "RenderErrorTopic"}
    assert set(resources("AWS::SNS::Topic", OVERFLOW_ON)) == topics
    subscriptions = [p["Properties"] for p in resources("AWS::SNS::Subscription", OVERFLOW_ON).values()]
    assert {ref(s["TopicArn"]) for s in subscriptions} == topics
    for subscription in subscriptions:
        assert subscription["Protocol"] == "sqs"
        assert subscription["Endpoint"] == {"Fn::GetAtt": ["RenderNotifyQueue", "Arn"]}
    (policy,) = [p["Properties"] for p in resources("AWS::SQS::QueuePolicy", OVERFLOW_ON).values()]
    assert [ref(q) for q in policy["Queues"]] == ["RenderNotifyQueue"]
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Principal"] == {"Service": "sns.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        assert {ref(s) for s in sources} == topics and len(sources) == 2
    queue = props("RenderNotifyQueue", OVERFLOW_ON)
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["RenderNotifyDeadLetterQueue", "Arn"]
    }
    for name in (*topics, "RenderNotifyQueue", "RenderNotifyDeadLetterQueue"):
        assert props(name, OVERFLOW_ON)["KmsMasterKeyId"] == {"Fn::GetAtt": ["OverflowKey", "Arn"]}
    key = props("OverflowKey", OVERFLOW_ON)
    assert key["EnableKeyRotation"] is True
    (sns_use,) = [
        s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "sns.amazonaws.com"}
    ]
    assert set(sns_use["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"} and "Condition" in sns_use


def test_autoscaling_tracks_the_backlog_and_an_alarm_starts_the_first_instance() -> None:
    ((target_name, target),) = resources("AWS::ApplicationAutoScaling::ScalableTarget", OVERFLOW_ON).items()
    target = target["Properties"]
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == (
        "sagemaker",
        "sagemaker:variant:DesiredInstanceCount",
    )
    assert target["MinCapacity"] == 0 and ref(target["MaxCapacity"]) == "SageMakerMaxInstances"
    variant = props("RenderEndpointConfig", OVERFLOW_ON)["ProductionVariants"][0]["VariantName"]
    assert target["ResourceId"] == {"Fn::Sub": f"endpoint/${{RenderEndpoint.EndpointName}}/variant/{variant}"}
    policies = {
        n: p["Properties"]
        for n, p in resources("AWS::ApplicationAutoScaling::ScalingPolicy", OVERFLOW_ON).items()
    }
    assert all(ref(p["ScalingTargetId"]) == target_name for p in policies.values())
    by_type = {p["PolicyType"]: (n, p) for n, p in policies.items()}
    assert set(by_type) == {"TargetTrackingScaling", "StepScaling"}
    endpoint_dimension = [
        {"Name": "EndpointName", "Value": {"Fn::GetAtt": ["RenderEndpoint", "EndpointName"]}}
    ]
    metric = by_type["TargetTrackingScaling"][1]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]
    assert (metric["Namespace"], metric["MetricName"]) == (
        "AWS/SageMaker",
        "ApproximateBacklogSizePerInstance",
    )
    assert metric["Dimensions"] == endpoint_dimension
    step_name, step = by_type["StepScaling"]
    adjustments = step["StepScalingPolicyConfiguration"]["StepAdjustments"]
    assert adjustments == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    (alarm,) = [p["Properties"] for p in resources("AWS::CloudWatch::Alarm", OVERFLOW_ON).values()]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SageMaker", "HasBacklogWithoutCapacity")
    assert alarm["Dimensions"] == endpoint_dimension
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert [ref(a) for a in alarm["AlarmActions"]] == [step_name]
