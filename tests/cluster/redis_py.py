"""redis-py's RedisCluster against a cluster, for tests/cluster.rs.

    redis_py.py load HOST PORT STOP_FILE [--tls CA --password PW]
        SET/GET with checks, pipelines and single-slot transactions until STOP_FILE exists,
        with redis-py's own retries; prints {"ops": N, "errors": N, "first_errors": [...]}.
    redis_py.py features HOST PORT
        BLPOP woken by an LPUSH, SSUBSCRIBE/SPUBLISH, a transaction on one hash slot;
        prints "ok" or raises.
"""

import json
import os
import sys
import threading

from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry


def client(host, port, ca=None, password=None):
    options = dict(
        host=host,
        port=int(port),
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 12),
        socket_timeout=10,
    )
    if ca:
        options.update(ssl=True, ssl_ca_certs=ca, password=password)
    return RedisCluster(**options)


def load(host, port, stop_file, ca=None, password=None):
    rc = client(host, port, ca, password)
    ops = errors = 0
    first_errors = []
    i = 0
    # The test's temporary directory going away also stops the load.
    while not os.path.exists(stop_file) and os.path.isdir(os.path.dirname(stop_file)):
        i += 1
        try:
            # Keys of this client's own (the port tells the two loads apart): another
            # client's write between a SET and its GET would be a false error.
            key, value = f"load:{port}:{i % 3000}", str(i)
            rc.set(key, value)
            got = rc.get(key)
            if got != value.encode():
                raise AssertionError(f"{key}: {got!r} != {value!r}")
            ops += 2
            if i % 25 == 0:
                pipe = rc.pipeline()
                for j in range(10):
                    pipe.set(f"pipe:{port}:{j}", i)
                    pipe.get(f"pipe:{port}:{j}")
                results = pipe.execute()
                if results[1::2] != [str(i).encode()] * 10:
                    raise AssertionError(f"pipeline read {results[1::2]!r}")
                ops += 20
        except Exception as error:  # every failure is counted and shown
            errors += 1
            if len(first_errors) < 5:
                first_errors.append(repr(error))
    print(json.dumps({"ops": ops, "errors": errors, "first_errors": first_errors}))


def features(host, port):
    rc = client(host, port)
    # A transaction on one slot (hash tags).
    with rc.pipeline(transaction=True) as tx:
        tx.set("{user:1}:name", "ada").incr("{user:1}:visits").get("{user:1}:name")
        assert tx.execute()[2] == b"ada"
    # BLPOP on the node owning the key, woken by another connection.
    got = []
    waiter = threading.Thread(target=lambda: got.append(rc.blpop(["queue"], timeout=10)))
    waiter.start()
    while rc.execute_command("CLIENT", "LIST", target_nodes=rc.get_node_from_key("queue")).count(b"cmd=blpop") == 0:
        pass
    rc.lpush("queue", "job")
    waiter.join()
    assert got == [(b"queue", b"job")], got
    # Sharded pub/sub: SSUBSCRIBE on the shard's node, SPUBLISH from another connection.
    pubsub = rc.pubsub()
    pubsub.ssubscribe("news")
    message = pubsub.get_sharded_message(timeout=5)
    assert message and message["type"] == "ssubscribe", message
    rc.spublish("news", "hello")
    message = pubsub.get_sharded_message(timeout=5)
    assert message and message["data"] == b"hello", message
    pubsub.close()
    print("ok")


if __name__ == "__main__":
    mode, host, port = sys.argv[1:4]
    if mode == "load":
        stop_file = sys.argv[4]
        ca = password = None
        if "--tls" in sys.argv:
            ca = sys.argv[sys.argv.index("--tls") + 1]
            password = sys.argv[sys.argv.index("--password") + 1]
        load(host, port, stop_file, ca, password)
    else:
        features(host, port)
