// What the mail store writers (Maildir, mbox) share: the message source they
// copy from and the way a failed write reports its cause (DESIGN §2 `store`).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::store {

// Receives the message in order, one chunk at a time; returns false when the
// store cannot take more (the writer keeps the reason).
using ChunkSink = std::function<bool(std::string_view chunk)>;

// Produces the message to store: calls `sink` for each chunk in order and
// stops early when it returns false (that is not the source's error). An
// error means the source itself could not be read (e.g. the queue file), and
// the writer then leaves nothing behind.
using MessageSource = std::function<Status(const ChunkSink& sink)>;

// A MessageSource over bytes already in memory (tests, small messages).
inline MessageSource source_from_string(std::string text) {
    return [text = std::move(text)](const ChunkSink& sink) -> Status {
        sink(text);
        return {};
    };
}

// The outcome of storing one message. `os_error` keeps the errno of the
// system call that failed, so the caller can tell a full disk (ENOSPC) or a
// file-system quota (EDQUOT) from other trouble and pick the right RFC 3463
// status; it is 0 when the failure was not a system call's (bad source,
// invalid folder). A lock that could not be taken in time reports EAGAIN.
struct WriteOutcome {
    std::string path;    // where the message landed (Maildir: the file in new/; mbox: the mbox file)
    uint64_t size = 0;   // bytes stored (for mbox: including the From_ line and final empty line)
    int os_error = 0;
    std::string error;   // empty on success

    bool ok() const { return error.empty(); }
    static WriteOutcome failure(int os_error, std::string error) {
        WriteOutcome outcome;
        outcome.os_error = os_error;
        outcome.error = std::move(error);
        if (outcome.error.empty()) outcome.error = "unknown error";
        return outcome;
    }
};

// mkdir -p: creates `path` and its missing parents, each with `mode`;
// existing directories keep their mode (the admin may have chosen another).
Status make_directories(const std::string& path, mode_t mode);

}  // namespace facteur::store
