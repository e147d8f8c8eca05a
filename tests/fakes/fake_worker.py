"""A worker for tests/test_pool.py that misbehaves on command. JSON lines in, JSON lines out.

    python tests/fakes/fake_worker.py [--pid-dir DIR] [--die-on-start] [--start-delay S]

Each request is {"op": OP, ...}; the answer echoes the request with "pid" added, except:
    sleep   sleep request["seconds"], then answer
    hang    never answer
    crash   exit at once with status request.get("code", 3), after a line on stderr
    garbage answer with a line that is not JSON
    partial write half a JSON object, no newline, then hang
    alloc   allocate request["mb"] MiB and touch it, then answer
    spawn   start a grandchild process, write its pid to request["pidfile"], then hang
    env     answer {"env": <the environment>}
    extra   answer twice (output the pool did not ask for)
    huge    write request["mb"] MiB without a newline, then hang
A {"hello": ...} request (a start-up handshake) is answered {"hello": true, "pid": …}.
--pid-dir: write an empty file named after our pid there, so tests can find every worker.
"""

import json
import os
import subprocess
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    if "--pid-dir" in args:
        open(os.path.join(args[args.index("--pid-dir") + 1], str(os.getpid())), "w").close()
    if "--start-delay" in args:
        time.sleep(float(args[args.index("--start-delay") + 1]))
    if "--die-on-start" in args:
        print("fake worker: refusing to start", file=sys.stderr)
        sys.exit(7)
    out = sys.stdout

    def answer(obj) -> None:
        obj["seq"] = req.get("seq")  # echo the pool's request number, as a real worker must
        out.write(json.dumps(obj) + "\n")
        out.flush()

    for line in sys.stdin:
        req = json.loads(line)
        if "hello" in req:
            answer({"hello": True, "pid": os.getpid()})
            continue
        op = req.get("op", "echo")
        if op == "sleep":
            time.sleep(req["seconds"])
        elif op == "hang":
            time.sleep(3600)
        elif op == "crash":
            print("fake worker: crashing as asked", file=sys.stderr, flush=True)
            os._exit(req.get("code", 3))
        elif op == "garbage":
            out.write("this is not json\n")
            out.flush()
            continue
        elif op == "partial":
            out.write('{"half": ')
            out.flush()
            time.sleep(3600)
        elif op == "alloc":
            block = bytearray(req["mb"] << 20)
            block[::4096] = b"x" * len(block[::4096])
        elif op == "spawn":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            with open(req["pidfile"], "w") as f:
                f.write(str(child.pid))
            time.sleep(3600)
        elif op == "env":
            answer({"env": dict(os.environ), "pid": os.getpid()})
            continue
        elif op == "extra":
            answer({**req, "pid": os.getpid()})
        elif op == "huge":
            out.write("x" * (req["mb"] << 20))
            out.flush()
            time.sleep(3600)
        answer({**req, "pid": os.getpid()})


if __name__ == "__main__":
    main()
