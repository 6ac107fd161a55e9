// Delivery of one target: mailbox (Maildir, mbox) or pipe, and the mapping of
// every failure to an RFC 3463 enhanced status code.
#include "deliverd/delivery_agent.hpp"

#include <unistd.h>

#include <cerrno>
#include <ctime>

#include <fmt/format.h>

#include "deliverd/delivered_message.hpp"
#include "deliverd/pipe_command.hpp"
#include "libmail/maildir.hpp"
#include "libmail/system.hpp"

namespace facteur::deliverd {
namespace {

using delivery::Outcome;
using delivery::TargetResult;

TargetResult sent(std::string reason) { return {Outcome::sent, "2.0.0", std::move(reason)}; }
TargetResult deferred(std::string dsn, std::string reason) { return {Outcome::deferred, std::move(dsn), std::move(reason)}; }
TargetResult bounced(std::string dsn, std::string reason) { return {Outcome::bounced, std::move(dsn), std::move(reason)}; }

TargetResult mailbox_full(bool permanent, std::string detail) {
    std::string reason = detail.empty() ? "mailbox full" : fmt::format("mailbox full: {}", detail);
    // RFC 3463 X.2.2: mailbox full.
    return permanent ? bounced("5.2.2", std::move(reason)) : deferred("4.2.2", std::move(reason));
}

const char* sysexits_name(int status) {
    static constexpr const char* kNames[] = {"EX_USAGE",    "EX_DATAERR",   "EX_NOINPUT", "EX_NOUSER", "EX_NOHOST",
                                             "EX_UNAVAILABLE", "EX_SOFTWARE", "EX_OSERR",   "EX_OSFILE", "EX_CANTCREAT",
                                             "EX_IOERR",    "EX_TEMPFAIL",  "EX_PROTOCOL", "EX_NOPERM", "EX_CONFIG"};
    if (status < 64 || status > 78) return nullptr;
    return kNames[status - 64];
}

// The command's output as one short line for a reason (it ends up in logs
// and bounce messages): control characters become spaces, runs collapse.
std::string one_line(std::string_view output) {
    std::string line;
    for (char c : output) {
        unsigned char byte = static_cast<unsigned char>(c);
        char put = (byte < 0x20 || byte == 0x7f) ? ' ' : c;
        if (put == ' ' && (line.empty() || line.back() == ' ')) continue;
        line += put;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line;
}

std::string with_output(std::string reason, std::string_view output) {
    std::string line = one_line(output);
    if (!line.empty()) reason += fmt::format(": {}", line);
    return reason;
}

// A problem found while preparing the message, as a result.
std::optional<TargetResult> preparation_problem(const Result<PreparedMessage>& prepared, std::string_view recipient) {
    if (!prepared) return deferred("4.3.0", fmt::format("cannot read the queue file: {}", prepared.error()));
    switch (prepared->problem) {
    case PreparedMessage::Problem::none: return std::nullopt;
    case PreparedMessage::Problem::mail_loop:
        // RFC 3463 X.4.6: routing loop detected.
        return bounced("5.4.6", fmt::format("mail forwarding loop for {}", recipient));
    case PreparedMessage::Problem::header_too_large:
        return bounced("5.3.4", fmt::format("message header larger than {} bytes", kMaxHeaderBytes));
    }
    return deferred("4.3.0", "internal error preparing the message");
}

TargetResult deliver_to_mailbox(const queue::Reader& reader, std::string_view sender, const delivery::Target& target,
                                const AgentSettings& settings) {
    bool mbox = target.format == "mbox";
    auto prepared = prepare_message(reader, sender, target.recipient, mbox ? Destination::mbox : Destination::maildir);
    if (auto problem = preparation_problem(prepared, target.recipient)) return *problem;

    std::string maildir = store::maildir_path(target.mail_path);
    std::string mbox_file = store::mbox_path(target.mail_path);
    if (target.quota_bytes > 0) {
        auto used = mbox ? store::mbox_usage(mbox_file) : store::maildir_usage(maildir);
        if (!used) return deferred("4.3.0", fmt::format("cannot compute the mailbox size: {}", used.error()));
        // An upper bound of the stored size (CRLF -> LF only shrinks it).
        uint64_t incoming = prepared->head.size() + (reader.message_size() - prepared->body_offset);
        if (*used > target.quota_bytes || incoming > target.quota_bytes - *used)
            return mailbox_full(settings.quota_exceeded_permanent,
                                fmt::format("{} of {} bytes used, message of {} bytes", *used, target.quota_bytes,
                                            incoming));
    }

    store::MessageSource source = message_source(reader, std::move(prepared).value());
    if (mbox) {
        store::WriteOutcome written = store::deliver_to_mbox(mbox_file, sender, std::time(nullptr), source,
                                                             settings.mbox_locks);
        if (!written.ok()) return write_failure_result(written, settings.quota_exceeded_permanent);
        return sent("delivered to mailbox");
    }
    // A folder (future sieve-like filing) is used when it exists; anything
    // else, including user+tag without such a folder, goes to INBOX.
    std::string directory = maildir;
    if (!target.folder.empty() && store::folder_exists(maildir, target.folder))
        directory = store::folder_path(maildir, target.folder);
    store::WriteOutcome written = store::deliver_to_maildir(directory, settings.hostname, source);
    if (!written.ok()) return write_failure_result(written, settings.quota_exceeded_permanent);
    return sent("delivered to maildir");
}

TargetResult deliver_to_command(const queue::Reader& reader, std::string_view sender, const delivery::Target& target,
                                const AgentSettings& settings) {
    // DESIGN §5: never as root. Temporary: the admin runs deliverd as the
    // vmail user and the mail goes out on a later attempt.
    if (geteuid() == 0) return deferred("4.3.0", "refusing to run a pipe command as root");
    auto argv = split_command(target.command);
    // RFC 3463 X.3.5: system incorrectly configured; deferred so the admin
    // can fix the alias before the message expires.
    if (!argv) return deferred("4.3.5", fmt::format("bad pipe command: {}", argv.error()));
    auto prepared = prepare_message(reader, sender, target.recipient, Destination::pipe);
    if (auto problem = preparation_problem(prepared, target.recipient)) return *problem;
    PipeOutcome outcome = run_pipe(*argv, pipe_environment(sender, target.recipient),
                                   message_source(reader, std::move(prepared).value()), settings.pipe_timeout);
    return pipe_result(outcome, target.command, settings.pipe_timeout);
}

}  // namespace

TargetResult write_failure_result(const store::WriteOutcome& outcome, bool quota_permanent) {
    switch (outcome.os_error) {
    case ENOSPC: return deferred("4.3.1", fmt::format("mail system full: {}", outcome.error));  // RFC 3463 X.3.1
    case EDQUOT:
    case EFBIG: return mailbox_full(quota_permanent, outcome.error);
    case EAGAIN: return deferred("4.2.0", fmt::format("mailbox busy: {}", outcome.error));
    default: return deferred("4.3.0", outcome.error);
    }
}

TargetResult pipe_result(const PipeOutcome& outcome, std::string_view command, std::chrono::milliseconds timeout) {
    using End = PipeOutcome::End;
    switch (outcome.end) {
    case End::exited:
        if (outcome.status == 0) return sent(fmt::format("delivered to command: {}", one_line(command)));
        if (outcome.status == 75)
            return deferred("4.3.0", with_output("command failed temporarily (exit status 75, EX_TEMPFAIL)", outcome.output));
        if (const char* name = sysexits_name(outcome.status))
            return bounced("5.3.0", with_output(fmt::format("command failed (exit status {}, {})", outcome.status, name),
                                                outcome.output));
        return bounced("5.3.0", with_output(fmt::format("command failed (exit status {})", outcome.status), outcome.output));
    case End::signaled:
        return deferred("4.3.0", with_output(fmt::format("command killed by signal {}", outcome.status), outcome.output));
    case End::timed_out:
        return deferred("4.3.0", with_output(fmt::format("command timed out after {} ms", timeout.count()), outcome.output));
    case End::exec_failed:
        return deferred("4.3.0", fmt::format("cannot execute command: {}", system::errno_text(outcome.status)));
    case End::start_failed: return deferred("4.3.0", fmt::format("cannot start command: {}", outcome.error));
    case End::input_failed: return deferred("4.3.0", fmt::format("cannot read the queue file: {}", outcome.error));
    }
    return deferred("4.3.0", "internal error running the command");
}

TargetResult deliver_target(const queue::Reader& reader, std::string_view sender, const delivery::Target& target,
                            const AgentSettings& settings) {
    if (target.kind == delivery::Kind::pipe) return deliver_to_command(reader, sender, target, settings);
    return deliver_to_mailbox(reader, sender, target, settings);
}

}  // namespace facteur::deliverd
