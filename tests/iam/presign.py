"""Signs an ElastiCache/MemoryDB IAM token with botocore's SigV4 presigner, for
tests/iam_signing.rs to compare with the proxy's own. Reads one JSON object per line on stdin,
prints one token per line."""

import datetime
import json
import sys

import botocore.auth
import botocore.awsrequest
import botocore.credentials


def presign(case):
    fixed = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc).replace(tzinfo=None)
    botocore.auth.get_current_datetime = lambda: fixed
    credentials = botocore.credentials.Credentials(
        case["access_key"], case["secret_key"], case.get("session_token")
    )
    params = {"Action": "connect", "User": case["user"]}
    if case["serverless"]:
        params["ResourceType"] = "ServerlessCache"
    request = botocore.awsrequest.AWSRequest(
        method="GET", url=f"http://{case['cache']}/", params=params
    )
    signer = botocore.auth.SigV4QueryAuth(credentials, case["service"], case["region"], expires=900)
    signer.add_auth(request)
    return request.url.removeprefix("http://")


for line in sys.stdin:
    print(presign(json.loads(line)), flush=True)
