// One delivery target -> one outcome: a Maildir or mbox write, or a pipe
// command, with quota, loop detection and the RFC 3463 status of every way
// it can fail. Blocking; deliverd runs it on its worker pool.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "deliverd/pipe_runner.hpp"
#include "libmail/delivery_protocol.hpp"
#include "libmail/mbox.hpp"
#include "libmail/queue.hpp"
#include "libmail/store.hpp"

namespace facteur::deliverd {

struct AgentSettings {
    std::string hostname;  // for Maildir file names
    std::chrono::milliseconds pipe_timeout{60'000};
    bool quota_exceeded_permanent = false;  // over quota: 5.2.2 instead of 4.2.2
    store::LockSettings mbox_locks;
};

// Delivers the queued message behind `reader` to one target. Never throws;
// every failure becomes a deferred (4.x.x) or bounced (5.x.x) result.
delivery::TargetResult deliver_target(const queue::Reader& reader, std::string_view sender,
                                      const delivery::Target& target, const AgentSettings& settings);

// The result for a failed store write, from its errno: ENOSPC -> 4.3.1
// "mail system full"; EDQUOT/EFBIG -> mailbox full (4.2.2, or 5.2.2 when
// quota_permanent); a lock not obtained in time -> 4.2.0; the rest 4.3.0.
delivery::TargetResult write_failure_result(const store::WriteOutcome& outcome, bool quota_permanent);

// The result of a pipe command: exit 0 -> 2.0.0; 75 (EX_TEMPFAIL), a
// signal, a timeout or a failure to start -> 4.3.0; any other exit status
// (sysexits.h 64-78 and the rest) -> 5.3.0. The reason quotes the start of
// the command's output on one line.
delivery::TargetResult pipe_result(const PipeOutcome& outcome, std::string_view command,
                                   std::chrono::milliseconds timeout);

}  // namespace facteur::deliverd
