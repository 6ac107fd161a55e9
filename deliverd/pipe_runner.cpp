// fork + execve of a pipe delivery, with poll(2)-multiplexed I/O, a deadline
// for the whole run, and RAII ownership of every descriptor and the child.
#include "deliverd/pipe_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <optional>

#include <fmt/format.h>

#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::deliverd {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

// Keeps a pipe end away from 0..2 so the child's dup2 onto stdin/stdout/
// stderr can never overwrite another end before it is duplicated.
Status keep_above_stdio(UniqueFd& fd) {
    if (fd.get() > 2) return {};
    int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return make_error(fmt::format("fcntl: {}", system::errno_text(errno)));
    fd.reset(moved);
    return {};
}

struct Pipe {
    UniqueFd read_end, write_end;
};

Result<Pipe> make_pipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return make_error(fmt::format("pipe: {}", system::errno_text(errno)));
    Pipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
    if (Status s = keep_above_stdio(pipe.read_end); !s) return make_error(s.error());
    if (Status s = keep_above_stdio(pipe.write_end); !s) return make_error(s.error());
    return pipe;
}

bool set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Writing to a child that exited raises SIGPIPE. deliverd ignores it
// process-wide (event::Loop does), but the runner must not depend on that:
// it blocks SIGPIPE in this thread for the run and consumes any it raised.
class SigpipeBlock {
public:
    SigpipeBlock() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, &previous_);
    }
    ~SigpipeBlock() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        timespec zero{};
        while (sigtimedwait(&set, nullptr, &zero) > 0) {
        }
        pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    }
    SigpipeBlock(const SigpipeBlock&) = delete;
    SigpipeBlock& operator=(const SigpipeBlock&) = delete;

private:
    sigset_t previous_;
};

// Owns the child: unless reaped, destruction kills its whole process group
// and waits for it, so no early return leaves a process behind.
class Child {
public:
    explicit Child(pid_t pid) : pid_(pid) {}
    ~Child() {
        if (pid_ <= 0) return;
        kill_group();
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    pid_t pid() const { return pid_; }
    void kill_group() const {
        kill(-pid_, SIGKILL);
        kill(pid_, SIGKILL);  // in case setpgid had not happened yet
    }
    // Non-blocking: the wait status once the child has exited.
    std::optional<int> try_reap() {
        int status = 0;
        pid_t done = waitpid(pid_, &status, WNOHANG);
        if (done != pid_) return std::nullopt;
        pid_ = -1;
        return status;
    }
    int reap() {
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        return status;
    }

private:
    pid_t pid_;
};

// In the child between fork and execve: async-signal-safe calls only (the
// parent is multi-threaded). Failures are reported through `report`.
[[noreturn]] void exec_child(int input, int output, int report, char* const argv[], char* const envp[]) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Ignored signals stay ignored across execve; the command gets defaults.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signo : {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGXFSZ, SIGALRM, SIGUSR1, SIGUSR2})
        sigaction(signo, &default_action, nullptr);
    int error = 0;
    if (dup2(input, 0) < 0 || dup2(output, 1) < 0 || dup2(output, 2) < 0) error = errno;
    if (error == 0 && report != 3) {
        if (dup3(report, 3, O_CLOEXEC) < 0)
            error = errno;
        else
            report = 3;
    }
    if (error == 0) {
        // Nothing of deliverd's (sockets, mailboxes) reaches the command.
        if (close_range(4, ~0U, 0) != 0)
            for (int fd = 4; fd < 65536; ++fd) close(fd);
        if (chdir("/") != 0) error = errno;
    }
    if (error == 0) {
        execve(argv[0], argv, envp);
        error = errno;
    }
    ssize_t ignored = write(report, &error, sizeof error);
    (void)ignored;
    _exit(127);
}

// The parent's side of the child's stdin and stdout/stderr.
struct ChildIo {
    UniqueFd input;   // the child's stdin
    UniqueFd output;  // the child's stdout and stderr
    std::string captured;
    Clock::time_point deadline;
    bool timed_out = false;

    // Reads what is available now, keeping the first bytes only.
    void read_output() {
        char buffer[4096];
        while (output) {
            ssize_t n = read(output.get(), buffer, sizeof buffer);
            if (n > 0) {
                size_t room = kMaxCapturedOutput - std::min(captured.size(), kMaxCapturedOutput);
                captured.append(buffer, std::min(room, static_cast<size_t>(n)));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            output.reset();  // EOF or error: nothing more to read
        }
    }

    // Feeds `data` to the child, draining its output meanwhile. False when
    // no more input should be produced: the child closed its stdin (not an
    // error: its exit status decides) or the deadline passed.
    bool write(std::string_view data) {
        while (!data.empty()) {
            if (!input) return false;
            int wait = remaining_ms(deadline);
            if (wait == 0) {
                timed_out = true;
                return false;
            }
            pollfd fds[2] = {{input.get(), POLLOUT, 0}, {output ? output.get() : -1, POLLIN, 0}};
            int ready = poll(fds, 2, wait);
            if (ready < 0 && errno != EINTR) {
                input.reset();
                return false;
            }
            if (ready <= 0) continue;
            if (fds[1].revents != 0) read_output();
            if (fds[0].revents & POLLERR) {
                input.reset();  // no reader left
                return false;
            }
            if (fds[0].revents & (POLLOUT | POLLHUP)) {
                ssize_t n = ::write(input.get(), data.data(), data.size());
                if (n > 0) {
                    data.remove_prefix(static_cast<size_t>(n));
                } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    input.reset();  // EPIPE: the child stopped reading
                    return false;
                }
            }
        }
        return true;
    }
};

}  // namespace

std::vector<std::string> pipe_environment(std::string_view sender, std::string_view recipient) {
    return {"PATH=/usr/bin:/bin", "HOME=/", fmt::format("SENDER={}", sender), fmt::format("RECIPIENT={}", recipient)};
}

PipeOutcome run_pipe(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
                     const store::MessageSource& input, std::chrono::milliseconds timeout) {
    PipeOutcome outcome;
    auto start_failed = [&outcome](int error, std::string why) {
        outcome.end = PipeOutcome::End::start_failed;
        outcome.status = error;
        outcome.error = std::move(why);
        return outcome;
    };
    // DESIGN §5: a pipe command never runs as root.
    if (geteuid() == 0) return start_failed(0, "refusing to run a command as root");
    if (argv.empty() || argv[0].empty() || argv[0][0] != '/')
        return start_failed(0, "the program must be an absolute path");
    Clock::time_point deadline = Clock::now() + timeout;

    // Everything execve needs is built before fork: the child may not
    // allocate (another thread may hold the malloc lock).
    std::vector<char*> c_argv, c_environment;
    for (const std::string& word : argv) c_argv.push_back(const_cast<char*>(word.c_str()));
    c_argv.push_back(nullptr);
    for (const std::string& variable : environment) c_environment.push_back(const_cast<char*>(variable.c_str()));
    c_environment.push_back(nullptr);

    auto stdin_pipe = make_pipe();
    if (!stdin_pipe) return start_failed(errno, stdin_pipe.error());
    auto stdout_pipe = make_pipe();
    if (!stdout_pipe) return start_failed(errno, stdout_pipe.error());
    auto report_pipe = make_pipe();  // CLOEXEC: EOF means execve succeeded
    if (!report_pipe) return start_failed(errno, report_pipe.error());

    SigpipeBlock sigpipe_block;
    pid_t pid = fork();
    if (pid < 0) return start_failed(errno, fmt::format("fork: {}", system::errno_text(errno)));
    if (pid == 0)
        exec_child(stdin_pipe->read_end.get(), stdout_pipe->write_end.get(), report_pipe->write_end.get(),
                   c_argv.data(), c_environment.data());
    Child child(pid);
    // Also from the parent, so kill(-pid) works even before the child ran;
    // EACCES after the child's execve is harmless.
    setpgid(pid, pid);
    stdin_pipe->read_end.reset();
    stdout_pipe->write_end.reset();
    report_pipe->write_end.reset();

    // Did execve work? The report pipe closes on success, carries errno on failure.
    for (;;) {
        int wait = remaining_ms(deadline);
        if (wait == 0) {
            outcome.end = PipeOutcome::End::timed_out;
            return outcome;
        }
        pollfd fd{report_pipe->read_end.get(), POLLIN, 0};
        int ready = poll(&fd, 1, wait);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) continue;
        int exec_error = 0;
        ssize_t n = read(report_pipe->read_end.get(), &exec_error, sizeof exec_error);
        if (n < 0 && errno == EINTR) continue;
        if (n == static_cast<ssize_t>(sizeof exec_error)) {
            child.reap();
            outcome.end = PipeOutcome::End::exec_failed;
            outcome.status = exec_error;
            return outcome;
        }
        break;
    }

    ChildIo io{std::move(stdin_pipe->write_end), std::move(stdout_pipe->read_end), {}, deadline};
    if (!set_nonblocking(io.input.get()) || !set_nonblocking(io.output.get()))
        return start_failed(errno, fmt::format("fcntl: {}", system::errno_text(errno)));

    Status read = input([&io](std::string_view chunk) { return io.write(chunk); });
    if (!read) {
        outcome.end = PipeOutcome::End::input_failed;
        outcome.error = read.error();
        return outcome;  // ~Child kills the group
    }
    io.input.reset();  // EOF on the child's stdin

    // Wait for the exit, still draining output. A pidfd (Linux 5.3+) wakes
    // us at the exit; without one, poll in short slices.
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    while (!io.timed_out) {
        if (auto status = child.try_reap()) {
            io.read_output();  // what it wrote before exiting
            outcome.output = std::move(io.captured);
            if (WIFEXITED(*status)) {
                outcome.end = PipeOutcome::End::exited;
                outcome.status = WEXITSTATUS(*status);
            } else {
                outcome.end = PipeOutcome::End::signaled;
                outcome.status = WIFSIGNALED(*status) ? WTERMSIG(*status) : 0;
            }
            return outcome;
        }
        int wait = remaining_ms(deadline);
        if (wait == 0) break;
        pollfd fds[2] = {{io.output ? io.output.get() : -1, POLLIN, 0}, {pidfd ? pidfd.get() : -1, POLLIN, 0}};
        int ready = poll(fds, 2, pidfd ? wait : std::min(wait, 10));
        if (ready > 0 && fds[0].revents != 0) io.read_output();
    }
    child.kill_group();
    child.reap();
    outcome.end = PipeOutcome::End::timed_out;
    outcome.output = std::move(io.captured);
    return outcome;
}

}  // namespace facteur::deliverd
