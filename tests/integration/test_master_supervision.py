"""master supervision (issue: foundation): a SIGKILLed child is restarted
within 2 s; SIGTERM leaves no process behind; processes = N; SIGHUP reload;
a service that keeps dying at start is throttled while master keeps serving."""

import os
import signal
import time

from harness import Instance, check, wait_for, fail


def test_restart_and_stop():
    with Instance() as instance:
        instance.start()
        rows = instance.status()
        services = {r["service"] for r in rows}
        check({"master", "authd"} <= services, "status lists master and authd")
        master_row = [r for r in rows if r["service"] == "master"][0]
        check(int(master_row["pid"]) == instance.master.pid, "status gives master's own pid")

        [old] = instance.pids("authd")
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        new = wait_for(lambda: [p for p in instance.pids("authd") if p != old], 5, interval=0.02)
        elapsed = time.monotonic() - killed_at
        check(bool(new), "authd was restarted after SIGKILL")
        check(elapsed < 2.0, f"restart took {elapsed:.2f}s (< 2s)")
        restarts = [r for r in instance.status() if r["service"] == "authd"][0]["restarts"]
        check(restarts == "1", "status counts one restart")
        check("exited unexpectedly signal=9" in instance.log(), "the death is logged with its signal")

        # The restarted authd still serves on the socket master kept open.
        from harness import DovecotAuthClient
        client = DovecotAuthClient(instance.sasl_socket)
        check("PLAIN" in client.mechanisms, "restarted authd answers on the same socket")
        client.close()

        children = instance.instance_processes()
        check(len(children) >= 2, "master and authd processes are visible")
        instance.master.send_signal(signal.SIGTERM)
        code = instance.master.wait(20)
        check(code == 0, "master exits 0 on SIGTERM")
        left = wait_for(lambda: not instance.instance_processes(), 5)
        check(left, "no process is left behind after SIGTERM")
        check(not os.path.exists(instance.control_socket), "control socket removed")


def test_processes_and_reload():
    with Instance(authd_config="processes = 2") as instance:
        instance.start()
        pids = wait_for(lambda: len(instance.pids("authd")) == 2 and instance.pids("authd"), 5)
        check(bool(pids) and len(pids) == 2, "processes = 2 starts two authd processes")

        with open(instance.conf) as f:
            text = f.read()
        with open(instance.conf, "w") as f:
            f.write(text.replace("processes = 2", "processes = 3"))
        instance.master.send_signal(signal.SIGHUP)
        three = wait_for(lambda: len(instance.pids("authd")) == 3, 5)
        check(three, "SIGHUP reload raises authd to three processes")
        check(set(pids) <= set(instance.pids("authd")), "existing processes survive a reload")

        # A broken configuration is refused and the instance keeps running.
        with open(instance.conf, "a") as f:
            f.write("no_such_parameter = 1\n")
        instance.master.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in instance.log(), 5)
        check("unknown parameter 'no_such_parameter'" in instance.log(), "bad reload is logged with the reason")
        check(len(instance.pids("authd")) == 3, "a refused reload changes nothing")
        instance.stop()
        check(not instance.instance_processes(), "stop leaves nothing behind")


def test_throttle():
    # authd cannot open a database file that is garbage: it exits at once,
    # every time. master must throttle it and keep serving.
    with Instance() as instance:
        import subprocess, os as _os
        from harness import BIN
        _os.makedirs(instance.dir + "/data/auth")
        with open(instance.dir + "/data/auth/users.sqlite", "wb") as f:
            f.write(b"this is not an SQLite database" * 100)
        log_file = open(instance.log_path, "ab")
        instance.master = subprocess.Popen([_os.path.join(BIN, "master"), "-c", instance.conf],
                                           stdout=log_file, stderr=subprocess.STDOUT)
        instance.log_file = log_file
        throttled = wait_for(lambda: any(r["service"] == "authd" and r["state"].startswith("throttled")
                                         for r in (instance.status() or [])), 20)
        check(throttled, "a service that keeps dying at start is throttled")
        check("service=authd throttled" in instance.log(), "throttling is logged")
        check(instance.master.poll() is None, "master keeps running")
        time.sleep(1.5)
        starts = instance.log().count("service=authd pid=")
        time.sleep(1.5)
        check(instance.log().count("service=authd pid=") == starts, "no restart while throttled")


def test_master_killed():
    # Even a SIGKILLed master leaves nothing behind: each child gets SIGTERM
    # from the kernel (PR_SET_PDEATHSIG), and a new master can start at once.
    with Instance(authd_config="processes = 2") as instance:
        instance.start()
        check(wait_for(lambda: len(instance.pids("authd")) == 2, 5), "two authd processes running")
        instance.master.kill()
        instance.master.wait(10)
        check(wait_for(lambda: not instance.instance_processes(), 5),
              "no authd is left after master is killed with SIGKILL")
        instance.start()
        check("authd" in instance.running_services(), "a new master starts on the same instance")
        second = instance.cli_detached("start")
        check(second != 0, "a second master for the same instance is refused")


if __name__ == "__main__":
    test_restart_and_stop()
    test_processes_and_reload()
    test_throttle()
    test_master_killed()
    print("4 passed, 0 failed")
