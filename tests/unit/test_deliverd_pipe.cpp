// Pipe deliveries: argv splitting (no shell syntax), and running commands:
// exit codes, signals, timeouts, a child that never reads, the environment,
// and the mapping of each outcome to an RFC 3463 status.
#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <chrono>

#include "deliverd/delivery_agent.hpp"
#include "deliverd/pipe_command.hpp"
#include "deliverd/pipe_runner.hpp"
#include "libmail/unique_fd.hpp"

using namespace facteur;
using namespace facteur::deliverd;
using Strings = std::vector<std::string>;

namespace {

// deliverd refuses to run commands as root, and these tests may run as
// root: then each run happens in a child process that became `nobody`
// first; the outcome comes back through a pipe.
void put_string(std::string& out, const std::string& value) {
    uint32_t length = static_cast<uint32_t>(value.size());
    out.append(reinterpret_cast<const char*>(&length), sizeof length);
    out += value;
}

std::string get_string(std::string_view& in) {
    uint32_t length = 0;
    REQUIRE(in.size() >= sizeof length);
    std::memcpy(&length, in.data(), sizeof length);
    in.remove_prefix(sizeof length);
    REQUIRE(in.size() >= length);
    std::string value(in.substr(0, length));
    in.remove_prefix(length);
    return value;
}

PipeOutcome run_unprivileged(const Strings& argv, const std::string& input, std::chrono::milliseconds timeout,
                             const Strings& environment = pipe_environment("alice@example.test", "bob@example.test")) {
    if (geteuid() != 0) return run_pipe(argv, environment, store::source_from_string(input), timeout);
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        read_end.reset();
        if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        PipeOutcome outcome = run_pipe(argv, environment, store::source_from_string(input), timeout);
        std::string out;
        put_string(out, std::to_string(static_cast<int>(outcome.end)));
        put_string(out, std::to_string(outcome.status));
        put_string(out, outcome.output);
        put_string(out, outcome.error);
        std::string_view rest = out;
        while (!rest.empty()) {
            ssize_t n = write(write_end.get(), rest.data(), rest.size());
            if (n <= 0) _exit(4);
            rest.remove_prefix(static_cast<size_t>(n));
        }
        _exit(0);
    }
    write_end.reset();
    std::string data;
    char buffer[4096];
    ssize_t n;
    while ((n = read(read_end.get(), buffer, sizeof buffer)) > 0) data.append(buffer, static_cast<size_t>(n));
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    std::string_view in = data;
    PipeOutcome outcome;
    outcome.end = static_cast<PipeOutcome::End>(std::stoi(get_string(in)));
    outcome.status = std::stoi(get_string(in));
    outcome.output = get_string(in);
    outcome.error = get_string(in);
    return outcome;
}

Strings shell(const std::string& script) { return {"/bin/sh", "-c", script}; }

}  // namespace

TEST_CASE("pipe commands split into argv words without any shell syntax") {
    auto [command, expected] = GENERATE(table<std::string, Strings>({
        {"/usr/bin/prog", {"/usr/bin/prog"}},
        {"/usr/bin/prog arg1 \"arg 2\"", {"/usr/bin/prog", "arg1", "arg 2"}},
        {"  /bin/x\t a   b  ", {"/bin/x", "a", "b"}},
        {"/bin/x 'single quoted' \"double 'inner'\"", {"/bin/x", "single quoted", "double 'inner'"}},
        {"/bin/x a\"b c\"d", {"/bin/x", "ab cd"}},
        {"/bin/x \"\" ''", {"/bin/x", "", ""}},
        {"/bin/x ; rm -rf /", {"/bin/x", ";", "rm", "-rf", "/"}},
        {"/bin/x a|b >out <in", {"/bin/x", "a|b", ">out", "<in"}},
        {"/bin/x $(id) `id` $HOME *", {"/bin/x", "$(id)", "`id`", "$HOME", "*"}},
        {"/bin/x a\\ b", {"/bin/x", "a\\", "b"}},
        {"/bin/x && /bin/y", {"/bin/x", "&&", "/bin/y"}},
    }));
    CAPTURE(command);
    auto words = split_command(command);
    REQUIRE(words.ok());
    CHECK(*words == expected);
}

TEST_CASE("bad pipe commands are refused") {
    auto command = GENERATE(as<std::string>{}, "", "   ", "prog arg", "./prog", "\"\" x", "/bin/x \"open",
                            "/bin/x 'open", "/bin/x\na", "/bin/x\ra", std::string("/bin/x\0y", 8), "~/bin/x");
    CAPTURE(command);
    CHECK_FALSE(split_command(command).ok());
    std::string many = "/bin/x";
    for (size_t i = 0; i < kMaxPipeArguments; ++i) many += " a";
    CHECK_FALSE(split_command(many).ok());
}

TEST_CASE("a command gets the message on stdin and its output is captured") {
    std::string message = "Return-Path: <alice@example.test>\nSubject: x\n\nbody\n";
    PipeOutcome outcome = run_unprivileged({"/bin/cat"}, message, std::chrono::seconds(10));
    CHECK(outcome.end == PipeOutcome::End::exited);
    CHECK(outcome.status == 0);
    CHECK(outcome.output == message);
}

TEST_CASE("only the first KiB of output is kept") {
    PipeOutcome outcome = run_unprivileged({"/bin/cat"}, std::string(100000, 'x'), std::chrono::seconds(10));
    CHECK(outcome.end == PipeOutcome::End::exited);
    CHECK(outcome.output == std::string(kMaxCapturedOutput, 'x'));
}

TEST_CASE("a command runs with the minimal environment only") {
    PipeOutcome outcome = run_unprivileged({"/usr/bin/env"}, "", std::chrono::seconds(10));
    CHECK(outcome.end == PipeOutcome::End::exited);
    CHECK(outcome.output ==
          "PATH=/usr/bin:/bin\nHOME=/\nSENDER=alice@example.test\nRECIPIENT=bob@example.test\n");
}

TEST_CASE("a command runs in / with stdio only and in its own process group") {
    PipeOutcome outcome =
        run_unprivileged(shell("pwd; ls /proc/self/fd | wc -l; test $(ps -o pgid= $$) -eq $$ && echo own-group"), "",
                         std::chrono::seconds(10));
    CHECK(outcome.end == PipeOutcome::End::exited);
    // 0, 1, 2 and the descriptor ls uses to read the directory.
    CHECK(outcome.output == "/\n4\nown-group\n");
}

TEST_CASE("exit codes and signals are reported") {
    PipeOutcome tempfail = run_unprivileged(shell("echo try later >&2; exit 75"), "", std::chrono::seconds(10));
    CHECK(tempfail.end == PipeOutcome::End::exited);
    CHECK(tempfail.status == 75);
    CHECK(tempfail.output == "try later\n");
    PipeOutcome nouser = run_unprivileged(shell("exit 67"), "", std::chrono::seconds(10));
    CHECK(nouser.status == 67);
    PipeOutcome killed = run_unprivileged(shell("kill -9 $$"), "", std::chrono::seconds(10));
    CHECK(killed.end == PipeOutcome::End::signaled);
    CHECK(killed.status == 9);
}

TEST_CASE("a program that cannot be executed is reported with its errno") {
    PipeOutcome outcome = run_unprivileged({"/nonexistent/program"}, "x", std::chrono::seconds(10));
    CHECK(outcome.end == PipeOutcome::End::exec_failed);
    CHECK(outcome.status == ENOENT);
}

TEST_CASE("a command past its deadline is killed with its process group") {
    auto started = std::chrono::steady_clock::now();
    // The background sleep holds the output pipe open: only killing the
    // whole group ends the run.
    PipeOutcome outcome = run_unprivileged(shell("echo started; sleep 30 & sleep 30"), "", std::chrono::milliseconds(500));
    auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK(outcome.end == PipeOutcome::End::timed_out);
    CHECK(outcome.output == "started\n");
    CHECK(elapsed < std::chrono::seconds(5));
}

TEST_CASE("a child that never reads a 2 MiB message cannot block the delivery") {
    std::string big(2 << 20, 'm');
    SECTION("it exits without reading: its exit status decides") {
        PipeOutcome outcome = run_unprivileged(shell("sleep 0.2; echo ignored"), big, std::chrono::seconds(10));
        CHECK(outcome.end == PipeOutcome::End::exited);
        CHECK(outcome.status == 0);
        CHECK(outcome.output == "ignored\n");
    }
    SECTION("it neither reads nor exits: the deadline ends it") {
        auto started = std::chrono::steady_clock::now();
        PipeOutcome outcome = run_unprivileged({"/bin/sleep", "30"}, big, std::chrono::milliseconds(500));
        CHECK(outcome.end == PipeOutcome::End::timed_out);
        CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    }
    SECTION("it writes much output while we write much input") {
        PipeOutcome outcome = run_unprivileged({"/bin/cat"}, big, std::chrono::seconds(20));
        CHECK(outcome.end == PipeOutcome::End::exited);
        CHECK(outcome.status == 0);
        CHECK(outcome.output.size() == kMaxCapturedOutput);
    }
}

TEST_CASE("running as root is refused") {
    if (geteuid() != 0) return;  // only observable as root
    PipeOutcome outcome = run_pipe({"/bin/true"}, {}, store::source_from_string(""), std::chrono::seconds(5));
    CHECK(outcome.end == PipeOutcome::End::start_failed);
    CHECK(outcome.error.find("root") != std::string::npos);
}

TEST_CASE("pipe outcomes map to RFC 3463 statuses") {
    using End = PipeOutcome::End;
    using delivery::Outcome;
    auto [end, status, output, outcome, dsn, reason] =
        GENERATE(table<End, int, std::string, Outcome, std::string, std::string>({
            {End::exited, 0, "", Outcome::sent, "2.0.0", "delivered to command: /usr/bin/prog -x"},
            {End::exited, 75, "busy\n", Outcome::deferred, "4.3.0",
             "command failed temporarily (exit status 75, EX_TEMPFAIL): busy"},
            {End::exited, 67, "no\nsuch\r\nuser\n", Outcome::bounced, "5.3.0",
             "command failed (exit status 67, EX_NOUSER): no such user"},
            {End::exited, 64, "", Outcome::bounced, "5.3.0", "command failed (exit status 64, EX_USAGE)"},
            {End::exited, 78, "", Outcome::bounced, "5.3.0", "command failed (exit status 78, EX_CONFIG)"},
            {End::exited, 1, "", Outcome::bounced, "5.3.0", "command failed (exit status 1)"},
            {End::signaled, 9, "", Outcome::deferred, "4.3.0", "command killed by signal 9"},
            {End::timed_out, 0, "", Outcome::deferred, "4.3.0", "command timed out after 60000 ms"},
            {End::exec_failed, ENOENT, "", Outcome::deferred, "4.3.0",
             "cannot execute command: No such file or directory"},
        }));
    PipeOutcome pipe;
    pipe.end = end;
    pipe.status = status;
    pipe.output = output;
    delivery::TargetResult result = pipe_result(pipe, "/usr/bin/prog -x", std::chrono::seconds(60));
    CHECK(result.outcome == outcome);
    CHECK(result.dsn == dsn);
    CHECK(result.reason == reason);
}
