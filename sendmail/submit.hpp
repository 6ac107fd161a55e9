// sendmail's main job: read a message from standard input and drop it into
// the spool's maildrop/ folder (mode 1733: any local user may add a file),
// then wake qmgr. Exit codes follow sysexits(3), like every sendmail.
#pragma once

#include <sys/types.h>

#include <string>

#include "libmail/config.hpp"
#include "libmail/result.hpp"
#include "sendmail/options.hpp"

namespace facteur::sendmail {

// Who is submitting: the real uid's account (never a name from the
// environment, which the user controls).
struct Submitter {
    uid_t uid = 0;
    std::string login;
    std::string gecos_name;  // first comma-separated field of pw_gecos
};
Submitter current_submitter();


struct Outcome {
    int exit_code = 0;       // EX_OK or a sysexits(3) code
    std::string message;     // for stderr when exit_code != 0
    std::string queue_id;    // when queued
};

// Reads `input_fd` to end of file (or the "." line), bounded by
// message_size_limit, writes the queue file and commits it (fsync) before
// returning success; wakes qmgr (a failure there only delays delivery:
// qmgr scans maildrop/ on a timer).
Outcome submit(const Options& options, const config::Config& config, const Submitter& submitter, int input_fd);

}  // namespace facteur::sendmail
