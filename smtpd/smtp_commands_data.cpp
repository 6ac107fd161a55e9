// Message data: DATA (RFC 5321 §4.1.1.4, §4.5.2) and BDAT (RFC 3030), the
// trace and submission headers smtpd adds, and queueing: the 250 goes out
// only after the queue file is fsync'd and renamed into incoming/ (DESIGN §3).
#include <ctime>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/message_header.hpp"
#include "smtpd/received_header.hpp"
#include "smtpd/smtp_session.hpp"

namespace facteur::smtpd {
namespace {

// A submission header held in memory to look for Message-ID and Date is
// cut off here: past it, what was seen decides.
constexpr size_t kMaxHeldHeader = 64 * 1024;
// BDAT bytes taken from the connection per read.
constexpr size_t kChunkRead = 64 * 1024;

Reply refusal_for(BodyError error) {
    switch (error) {
        case BodyError::bare_line_ending:
            // DESIGN §5: SMTP smuggling defence, like Postfix's
            // smtpd_forbid_bare_newline and Exim's wording.
            return Reply{550, "5.6.11", "Error: bare <CR> or <LF> not allowed; use <CR><LF>"};
        case BodyError::line_too_long:
            return Reply{552, "5.3.4", "Error: message line too long"};
        case BodyError::too_large:
            return Reply{552, "5.3.4", "Error: message size exceeds fixed limit"};
        case BodyError::too_many_hops:
            return Reply{554, "5.4.6", "Error: too many hops (mail loop?)"};
        case BodyError::none:
            break;
    }
    return Reply{451, "4.3.0", "Error: internal error"};
}

}  // namespace

bool Session::begin_message() {
    auto created = queue::Writer::create(services_.spool, queue::Folder::incoming, queue::new_queue_id());
    if (!created) {
        log::error("cannot create a queue file: {}", created.error());
        send(451, "4.3.0", "Error: queue file write error");
        return false;
    }
    writer_.emplace(std::move(created).value());
    message_time_ = std::time(nullptr);
    store_failed_ = false;
    if (auth_user_.empty()) {
        log::info("{}: client={}", writer_->queue_id(), client());
    } else {
        log::info("{}: client={}, sasl_method={}, sasl_username={}", writer_->queue_id(), client(), auth_method_,
                  log::printable(auth_user_));
    }
    ReceivedInfo info;
    info.helo = helo_;
    info.client_address = client_address_;
    info.myhostname = services_.settings.myhostname;
    info.protocol = protocol_name(extended_, connection_->is_tls(), !auth_user_.empty());
    info.queue_id = writer_->queue_id();
    if (connection_->is_tls()) {
        info.tls_version = connection_->tls_version();
        info.tls_cipher = connection_->tls_cipher();
        info.tls_bits = connection_->tls_cipher_bits();
    }
    if (recipients_.size() == 1) info.recipient = recipients_.front().address;
    info.date = message::format_date(message_time_);
    if (Status written = writer_->append(received_header(info)); !written) {
        log::error("{}: {}", writer_->queue_id(), written.error());
        store_failed_ = true;
    }
    // RFC 6409 §8.3, §8.1: a submitted message without Message-ID or Date
    // gets them; the header is held until we know.
    header_buffering_ = kind_ != PortKind::smtp;
    return true;
}

void Session::store(std::string_view bytes) {
    if (store_failed_ || !writer_) return;
    if (header_buffering_) {
        header_buffer_.append(bytes);
        const BodyScanner& scanner = data_reader_ ? data_reader_->scanner() : *chunk_scanner_;
        if (!scanner.in_header() || header_buffer_.size() >= kMaxHeldHeader) flush_header_buffer(scanner);
        return;
    }
    if (Status written = writer_->append(bytes); !written) {
        log::error("{}: {}", writer_->queue_id(), written.error());
        store_failed_ = true;
        writer_->abort();
    }
}

void Session::flush_header_buffer(const BodyScanner& scanner) {
    if (!header_buffering_) return;
    header_buffering_ = false;
    std::string added;
    if (!scanner.has_message_id())
        added += fmt::format("Message-ID: <{}@{}>\r\n", writer_->queue_id(), services_.settings.myhostname);
    if (!scanner.has_date()) added += fmt::format("Date: {}\r\n", message::format_date(message_time_));
    std::string held;
    held.swap(header_buffer_);
    if (!store_failed_ && !added.empty()) store(added);
    store(held);
}

void Session::cmd_data(const Command&) {
    // RFC 3030 §3: a BINARYMIME body cannot be sent with DATA.
    if (mail_options_.body == queue::BodyType::binary_mime)
        return send(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT");
    if (!begin_message()) return;
    BodyLimits limits;
    limits.max_size = services_.settings.message_size_limit;
    limits.max_line_length = services_.settings.data_line_limit;
    limits.max_received = services_.settings.hop_count_limit;
    limits.check_line_endings = true;
    data_reader_.emplace(limits);
    state_ = State::data;
    connection_->set_max_line_length(services_.settings.data_line_limit);
    send(354, "", "End data with <CR><LF>.<CR><LF>");
}

void Session::cmd_bdat(const Command& command) {
    auto argument = parse_bdat_argument(command.argument);
    // Without a size the chunk cannot be skipped; the client is confused.
    if (!argument) return send(501, "5.5.4", argument.error());
    chunk_size_ = argument->size;
    chunk_remaining_ = argument->size;
    chunk_last_ = argument->last;
    chunk_reading_ = true;
    chunk_refusal_.reset();
    if (state_ != State::rcpt && state_ != State::bdat) {
        // Refused, but the chunk is still read and thrown away so its bytes
        // are never taken for commands (RFC 3030 §3).
        if (state_ == State::mail) chunk_refusal_ = Reply{554, "5.5.1", "Error: no valid recipients"};
        else chunk_refusal_ = Reply{503, "5.5.1", state_ == State::fresh ? "Error: send HELO/EHLO first" : "Error: need MAIL command"};
    } else if (state_ == State::rcpt) {
        if (!begin_message()) {
            // begin_message replied already; the chunk is skipped quietly.
            chunk_refusal_ = Reply{0, "", ""};
            reset_transaction();
        } else {
            BodyLimits limits;
            limits.max_size = services_.settings.message_size_limit;
            bool binary = mail_options_.body == queue::BodyType::binary_mime;
            limits.max_line_length = binary ? 0 : services_.settings.data_line_limit;
            limits.max_received = services_.settings.hop_count_limit;
            limits.check_line_endings = !binary;
            chunk_scanner_.emplace(limits);
            state_ = State::bdat;
        }
    }
    if (chunk_remaining_ == 0) chunk_complete();
}

bool Session::read_chunk() {
    if (chunk_remaining_ == 0) {
        chunk_complete();
        return true;
    }
    std::string bytes = connection_->read_bytes(static_cast<size_t>(std::min<uint64_t>(chunk_remaining_, kChunkRead)));
    if (bytes.empty()) return false;
    chunk_remaining_ -= bytes.size();
    if (!chunk_refusal_ && chunk_scanner_) {
        chunk_scanner_->consume(bytes);
        if (chunk_scanner_->error() == BodyError::none) store(bytes);
    }
    if (chunk_remaining_ == 0) chunk_complete();
    return true;
}

void Session::chunk_complete() {
    chunk_reading_ = false;
    if (chunk_refusal_) {
        Reply refusal = std::move(*chunk_refusal_);
        chunk_refusal_.reset();
        if (refusal.code != 0) send(refusal);
        return;
    }
    if (!chunk_scanner_) return;
    if (chunk_last_) {
        chunk_scanner_->finish();
        BodyScanner scanner = std::move(*chunk_scanner_);
        chunk_scanner_.reset();
        end_of_message(scanner.error(), scanner, false);
        return;
    }
    if (chunk_scanner_->error() != BodyError::none) {
        // RFC 3030 §4.2: an error in the middle ends the transaction; the
        // client's further BDATs get 503 and are skipped.
        Reply refusal = refusal_for(chunk_scanner_->error());
        log::info("{}: reject: BDAT from {}: {} {} {}", writer_ ? writer_->queue_id() : "NOQUEUE", client(),
                  refusal.code, refusal.enhanced, refusal.text);
        reset_transaction();
        return send(refusal);
    }
    if (store_failed_) {
        reset_transaction();
        return send(451, "4.3.0", "Error: queue file write error");
    }
    send(250, "2.0.0", fmt::format("{} octets received", chunk_size_));
}

void Session::end_of_message(BodyError error, const BodyScanner& scanner, bool close_after) {
    if (error != BodyError::none) {
        Reply refusal = refusal_for(error);
        log::info("{}: reject: {} from {}: {} {} {}; from=<{}> size={}", writer_ ? writer_->queue_id() : "NOQUEUE",
                  current_verb_ == Verb::bdat ? "BDAT" : "DATA", client(), refusal.code, refusal.enhanced, refusal.text,
                  log::printable(sender_), scanner.size());
        reset_transaction();
        send(refusal);
        if (close_after) {
            // The end of data followed a line whose ending we never saw:
            // what comes next cannot be trusted to be commands.
            close_session(Reply{421, "4.7.0", fmt::format("{} Error: closing after an over-long line",
                                                          services_.settings.myhostname)});
        }
        return;
    }
    if (header_buffering_) flush_header_buffer(scanner);
    if (store_failed_ || !writer_) {
        reset_transaction();
        return send(451, "4.3.0", "Error: queue file write error");
    }
    queue_message();
}

void Session::queue_message() {
    queue::Envelope envelope;
    envelope.sender = sender_;
    envelope.recipients = recipients_;
    envelope.envid = mail_options_.envid;
    envelope.ret = mail_options_.ret;
    envelope.body = mail_options_.body;
    envelope.smtputf8 = mail_options_.smtputf8;
    envelope.arrival_time = message_time_;
    envelope.client_address = client_address_;
    envelope.client_helo = helo_;
    envelope.protocol = protocol_name(extended_, connection_->is_tls(), !auth_user_.empty());
    envelope.auth_user = auth_user_;
    auto writer = std::make_shared<queue::Writer>(std::move(*writer_));
    writer_.reset();
    std::string queue_id = writer->queue_id();
    // Postfix's size=: the queue file's message, added headers included.
    uint64_t size = writer->size();
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    // commit() fsyncs: never on the loop (DESIGN §6).
    services_.pool.submit<Status>([writer, envelope]() { return writer->commit(envelope); },
                                  [weak, writer, queue_id, size](Status status) {
                                      auto self = weak.lock();
                                      if (!self) {
                                          if (status) log::info("{}: queued, but the client left before the reply", queue_id);
                                          return;
                                      }
                                      self->message_committed(queue_id, size, std::move(status));
                                  });
}

void Session::message_committed(const std::string& queue_id, uint64_t size, Status status) {
    if (!status) {
        log::error("{}: cannot queue the message: {}", queue_id, status.error());
        reset_transaction();
        if (state_ != State::closing) send(451, "4.3.0", "Error: queue file write error");
        return end_wait();
    }
    log::info("{}: from=<{}>, size={}, nrcpt={} (queue active)", queue_id, log::printable(sender_), size,
              recipients_.size());
    services_.qmgr.wake();
    reset_transaction();
    if (state_ != State::closing) send(250, "2.0.0", fmt::format("Ok: queued as {}", queue_id));
    end_wait();
}

}  // namespace facteur::smtpd
