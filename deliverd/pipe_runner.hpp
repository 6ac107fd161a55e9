// Runs one pipe delivery: fork + execve of an argv vector (never a shell,
// never as root) with a minimal environment, the message on stdin, stdout
// and stderr captured, and the whole process group killed at the deadline.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "libmail/store.hpp"

namespace facteur::deliverd {

inline constexpr size_t kMaxCapturedOutput = 1024;

struct PipeOutcome {
    enum class End {
        exited,        // status = exit code
        signaled,      // status = signal number
        timed_out,     // killed (process group, SIGKILL) at the deadline
        exec_failed,   // status = errno of execve (ENOENT, EACCES, ...)
        start_failed,  // pipe/fork failed or we run as root; status = errno or 0
        input_failed,  // the message could not be read; the child was killed
    };
    End end = End::start_failed;
    int status = 0;
    std::string output;  // the first kMaxCapturedOutput bytes of stdout+stderr
    std::string error;   // for start_failed and input_failed
};

// The environment a pipe command gets: PATH=/usr/bin:/bin, HOME=/,
// SENDER and RECIPIENT (nothing of deliverd's own environment leaks).
std::vector<std::string> pipe_environment(std::string_view sender, std::string_view recipient);

// Runs argv[0] (an absolute path) with `environment`, in its own process
// group, working directory "/", stdin fed from `input`. Writing and reading
// are multiplexed with poll(2), so a child that never reads its input (or
// fills its output pipe) cannot block us; a child that closes its stdin
// early simply gets no more input. Everything (writing, waiting for the
// exit) must finish within `timeout`. Refuses to run anything when the
// process runs as root. Blocking: call it from a worker thread.
PipeOutcome run_pipe(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
                     const store::MessageSource& input, std::chrono::milliseconds timeout);

}  // namespace facteur::deliverd
