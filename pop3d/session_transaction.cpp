// The TRANSACTION and UPDATE states (RFC 1939 §5, §6): STAT, LIST, UIDL,
// RETR and TOP streamed in bounded pieces, DELE/RSET marks, NOOP, LAST
// (RFC 1460), and QUIT's commit of deletions and \Seen flags; a dropped
// session saves \Seen only and never deletes.
#include <iterator>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "pop3d/session.hpp"

namespace facteur::pop3d {
namespace {

// Stored bytes read per step of a RETR/TOP; the read buffer exists only
// while a message is being sent.
constexpr size_t kReadChunk = 32 * 1024;
// More of a multi-line response is produced only while the connection's
// output buffer holds less than this; the rest follows on_drained.
constexpr size_t kStreamHighWater = 64 * 1024;
// Lines of LIST/UIDL produced per step.
constexpr size_t kListingPiece = 4096;

enum class Pumped { more, done, failed };

// Buffers for producing a piece of a multi-line response. The loop thread
// fills one, encodes it and hands it to the connection within one call,
// so every session of the process shares them: nothing is allocated (or
// zero-filled) per RETR, and an idle session holds no buffer at all.
struct Scratch {
    std::string read;
    std::string out;
};
Scratch& scratch() {
    thread_local Scratch buffers;
    if (buffers.read.size() != kReadChunk) buffers.read.resize(kReadChunk);
    return buffers;
}

}  // namespace

std::optional<size_t> Session::message_argument(std::string_view argument) {
    std::optional<size_t> number = parse_message_number(argument, count_);
    // RFC 1939 §5: a message marked deleted is not to be referred to.
    if (!number || deleted_[*number - 1]) {
        err("no such message");
        return std::nullopt;
    }
    return *number - 1;
}

void Session::cmd_noop(const Command&) { ok(""); }

void Session::cmd_stat(const Command&) { ok(fmt::format("{} {}", count_ - deleted_count_, kept_size_)); }

void Session::cmd_list(const Command& command) {
    if (command.arguments.size() > 1) return err("Usage: LIST [message]");
    if (command.arguments.size() == 1) {
        auto index = message_argument(command.arguments[0]);
        if (!index) return;
        return ok(fmt::format("{} {}", *index + 1, mailbox_->mailbox->size(*index)));
    }
    ok(fmt::format("{} messages ({} octets)", count_ - deleted_count_, kept_size_));
    multiline_ = std::make_unique<MultiLine>();
    multiline_->keyword = Keyword::list;
    begin_wait();
    pump();
}

void Session::cmd_uidl(const Command& command) {
    if (command.arguments.size() > 1) return err("Usage: UIDL [message]");
    if (command.arguments.size() == 1) {
        auto index = message_argument(command.arguments[0]);
        if (!index) return;
        return ok(fmt::format("{} {}", *index + 1, mailbox_->mailbox->uid(*index)));
    }
    ok("");
    multiline_ = std::make_unique<MultiLine>();
    multiline_->keyword = Keyword::uidl;
    begin_wait();
    pump();
}

void Session::cmd_retr(const Command& command) {
    if (command.arguments.size() != 1) return err("Usage: RETR message");
    auto index = message_argument(command.arguments[0]);
    if (!index) return;
    send_message(*index, std::nullopt);
}

void Session::cmd_top(const Command& command) {
    if (command.arguments.size() != 2) return err("Usage: TOP message lines");
    auto index = message_argument(command.arguments[0]);
    if (!index) return;
    std::optional<uint64_t> lines = parse_decimal(command.arguments[1]);
    if (!lines) return err("Invalid number of lines");
    send_message(*index, *lines);
}

void Session::send_message(size_t index, std::optional<uint64_t> body_lines) {
    auto reader = mailbox_->mailbox->open_message(index);
    if (!reader) {
        // Removed by another program since the snapshot (e.g. an IMAP
        // client's expunge): the session goes on without it.
        log::warning("user=<{}> ip={}: message {} cannot be read: {}", log::printable(auth_user_), client(),
                     index + 1, reader.error());
        return err_uncounted(fmt::format("Message {} is no longer available", index + 1));
    }
    if (body_lines) {
        ok("");
    } else {
        // RFC 1939 §7 and §11: the exact octet count of what follows.
        ok(fmt::format("{} octets", mailbox_->mailbox->size(index)));
    }
    multiline_ = std::make_unique<MultiLine>();
    multiline_->keyword = body_lines ? Keyword::top : Keyword::retr;
    multiline_->index = index;
    multiline_->reader = std::move(reader).value();
    multiline_->encoder.emplace(body_lines);
    // RFC 1460: LAST is the highest message number accessed.
    last_accessed_ = std::max(last_accessed_, index + 1);
    begin_wait();
    pump();
}

void Session::pump() {
    auto self = shared_from_this();
    while (multiline_ && !connection_->closed() && connection_->output_size() < kStreamHighWater) {
        MultiLine& response = *multiline_;
        bool listing = response.keyword == Keyword::list || response.keyword == Keyword::uidl;
        bool more = listing ? pump_listing(response) : pump_message(response);
        if (!multiline_) return;
        if (!more) {
            multiline_.reset();
            end_wait();
            return;
        }
    }
}

bool Session::pump_listing(MultiLine& response) {
    const store::Mailbox& mailbox = *mailbox_->mailbox;
    std::string& out = scratch().out;
    out.clear();
    while (response.index < count_ && out.size() < kListingPiece) {
        size_t i = response.index++;
        if (deleted_[i]) continue;
        if (response.keyword == Keyword::list) {
            fmt::format_to(std::back_inserter(out), "{} {}\r\n", i + 1, mailbox.size(i));
        } else {
            fmt::format_to(std::back_inserter(out), "{} {}\r\n", i + 1, mailbox.uid(i));
        }
    }
    bool last = response.index >= count_;
    if (last) out += ".\r\n";
    connection_->write(out);
    return !last;
}

bool Session::pump_message(MultiLine& response) {
    Scratch& buffers = scratch();
    auto read = response.reader->read(buffers.read.data(), buffers.read.size());
    if (!read) {
        // The "+OK" is out and part of the message maybe too: no reply can
        // say what went wrong, so the client sees the connection end
        // before the terminating "." and knows the message is incomplete.
        log::error("user=<{}> ip={}: reading message {} failed: {}", log::printable(auth_user_), client(),
                   response.index + 1, read.error());
        multiline_.reset();
        connection_->close();
        return false;
    }
    Encoder& encoder = *response.encoder;
    std::string& out = buffers.out;
    out.clear();
    encoder.feed(std::string_view(buffers.read.data(), *read), out);
    bool last = *read == 0 || encoder.done();
    if (last) encoder.finish(out);
    connection_->write(out);
    if (last) message_sent(response);
    return !last;
}

void Session::message_sent(MultiLine& response) {
    accessed_[response.index] = true;
    if (response.keyword == Keyword::retr) ++retrieved_;
    retrieved_bytes_ += response.encoder->content_bytes();
}

void Session::cmd_dele(const Command& command) {
    if (command.arguments.size() != 1) return err("Usage: DELE message");
    std::optional<size_t> number = parse_message_number(command.arguments[0], count_);
    if (!number) return err("no such message");
    size_t index = *number - 1;
    if (deleted_[index]) return err(fmt::format("message {} already deleted", *number));
    deleted_[index] = true;
    ++deleted_count_;
    kept_size_ -= mailbox_->mailbox->size(index);
    ok(fmt::format("message {} deleted", *number));
}

void Session::cmd_rset(const Command&) {
    // RFC 1939 §5: unmark every deletion; RFC 1460: LAST goes back to 0.
    // Messages read stay read (\Seen is not a deletion mark).
    deleted_.assign(count_, false);
    deleted_count_ = 0;
    kept_size_ = 0;
    for (size_t i = 0; i < count_; ++i) kept_size_ += mailbox_->mailbox->size(i);
    last_accessed_ = 0;
    ok(fmt::format("maildrop has {} messages ({} octets)", count_, kept_size_));
}

void Session::cmd_last(const Command&) { ok(fmt::format("{}", last_accessed_)); }

std::vector<size_t> Session::seen_to_mark(bool honour_deletions) const {
    std::vector<size_t> indexes;
    const store::Mailbox& mailbox = *mailbox_->mailbox;
    for (size_t i = 0; i < count_; ++i) {
        if (!accessed_[i] || mailbox.seen(i)) continue;
        if (honour_deletions && deleted_[i]) continue;
        indexes.push_back(i);
    }
    return indexes;
}

void Session::cmd_quit_transaction(const Command&) {
    // RFC 1939 §6: UPDATE — the deletions happen now, and only now.
    state_ = State::update;
    begin_wait();
    std::vector<size_t> to_delete;
    for (size_t i = 0; i < count_; ++i)
        if (deleted_[i]) to_delete.push_back(i);
    std::vector<size_t> to_mark_seen = seen_to_mark(true);
    if (to_delete.empty() && to_mark_seen.empty()) return update_committed(store::CommitReport{});
    commit_running_ = true;
    std::shared_ptr<OpenMailbox> mailbox = mailbox_;
    std::weak_ptr<Session> weak = weak_from_this();
    services_.pool.submit<Result<store::CommitReport>>(
        [mailbox, to_delete, to_mark_seen] { return mailbox->mailbox->commit(to_delete, to_mark_seen); },
        [weak](Result<store::CommitReport> report) {
            if (auto self = weak.lock()) self->update_committed(std::move(report));
        });
}

void Session::update_committed(Result<store::CommitReport> report) {
    auto self = shared_from_this();
    commit_running_ = false;
    std::string reply;
    if (!report) {
        // RFC 1939 §6: -ERR when some deleted messages were not removed.
        log::error("logout user=<{}> ip={}: commit failed, nothing deleted: {}", log::printable(auth_user_), client(),
                   report.error());
        reply = "-ERR [SYS/TEMP] Messages could not be deleted, try again later";
    } else {
        log::info("logout user=<{}> ip={} retrieved={} bytes={} deleted={}", log::printable(auth_user_), client(),
                  retrieved_, retrieved_bytes_, report->deleted + report->already_gone);
        reply = fmt::format("+OK Logging out, messages deleted: {}", deleted_count_);
    }
    // The lock goes before the client reads our answer, so its next
    // session never meets [IN-USE] from this one.
    mailbox_.reset();
    if (connection_gone_) return finish();
    close_session(reply);
}

void Session::save_seen_after_drop() {
    std::vector<size_t> to_mark_seen = seen_to_mark(false);
    if (to_mark_seen.empty()) return finish();
    commit_running_ = true;
    std::shared_ptr<OpenMailbox> mailbox = mailbox_;
    std::weak_ptr<Session> weak = weak_from_this();
    std::string user = auth_user_;
    services_.pool.submit<Result<store::CommitReport>>(
        [mailbox, to_mark_seen] { return mailbox->mailbox->commit({}, to_mark_seen); },
        [weak, user](Result<store::CommitReport> report) {
            if (!report) log::error("user=<{}>: saving \\Seen flags failed: {}", log::printable(user), report.error());
            auto self = weak.lock();
            if (!self) return;
            self->commit_running_ = false;
            self->finish();
        });
}

}  // namespace facteur::pop3d
