// The SMTP session state machine: command table, input loop, replies,
// limits and the end of a session (see smtp_session.hpp).
#include "smtpd/smtp_session.hpp"


#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/log.hpp"
#include "libmail/secret.hpp"

namespace facteur::smtpd {
namespace {

constexpr unsigned bit(Session::State state) { return 1u << static_cast<unsigned>(state); }

constexpr unsigned kIdle = bit(Session::State::fresh) | bit(Session::State::greeted);
constexpr unsigned kBeforeData = kIdle | bit(Session::State::mail) | bit(Session::State::rcpt);
constexpr unsigned kAnyCommand = kBeforeData | bit(Session::State::bdat);

// Replies are small; a client that pipelines without reading them is
// stopped from growing our output buffer past this.
constexpr size_t kMaxPendingOutput = 64 * 1024;

}  // namespace

// "What happens on RCPT TO" is found here: the handler and where it is allowed.
const Session::CommandSpec Session::kCommands[] = {
    {Verb::helo, &Session::cmd_helo, kBeforeData},
    {Verb::ehlo, &Session::cmd_ehlo, kBeforeData},
    {Verb::mail, &Session::cmd_mail, bit(State::greeted)},
    {Verb::rcpt, &Session::cmd_rcpt, bit(State::mail) | bit(State::rcpt)},
    {Verb::data, &Session::cmd_data, bit(State::rcpt)},
    // BDAT is accepted everywhere so that its chunk is always read and
    // thrown away when refused, never taken for commands (RFC 3030 §3).
    {Verb::bdat, &Session::cmd_bdat, kAnyCommand},
    {Verb::rset, &Session::cmd_rset, kAnyCommand},
    {Verb::noop, &Session::cmd_noop, kAnyCommand},
    {Verb::quit, &Session::cmd_quit, kAnyCommand},
    {Verb::help, &Session::cmd_help, kAnyCommand},
    {Verb::vrfy, &Session::cmd_vrfy, kBeforeData},
    {Verb::expn, &Session::cmd_expn, kBeforeData},
    {Verb::turn, &Session::cmd_not_implemented, kAnyCommand},
    // RFC 1985: outside a mail transaction, after HELO/EHLO.
    {Verb::etrn, &Session::cmd_etrn, bit(State::greeted)},
    {Verb::starttls, &Session::cmd_starttls, kIdle},
    {Verb::auth, &Session::cmd_auth, bit(State::greeted)},
};

Session::Session(SessionServices services, std::shared_ptr<event::Connection> connection, PortKind kind)
    : services_(services),
      connection_(std::move(connection)),
      kind_(kind),
      client_address_(connection_->peer_address()),
      idle_timer_(services.loop, [this] { on_idle_timeout(); }) {}

Session::~Session() {
    wipe_line();
    if (connection_ && !connection_->closed()) {
        connection_->on_close(nullptr);
        connection_->close();
    }
}

void Session::wipe_line() { secret::wipe_capacity(line_); }

std::string Session::client() const { return fmt::format("unknown[{}]", client_address_); }

void Session::start(std::function<void()> on_finished) {
    on_finished_ = std::move(on_finished);
    std::weak_ptr<Session> weak = weak_from_this();
    connection_->on_readable([weak] {
        if (auto self = weak.lock()) self->on_readable();
    });
    connection_->on_close([weak](event::CloseReason reason) {
        if (auto self = weak.lock()) self->on_closed(reason);
    });
    connection_->on_drained([weak] {
        // Output caught up: read again what the output limit held back.
        auto self = weak.lock();
        if (self && !self->waiting_ && self->state_ != State::closing) {
            self->connection_->resume_reading();
        }
    });
    connection_->set_max_line_length(services_.settings.command_line_limit);
    // The session's own timer says "421 4.4.2" on silence; the connection's
    // timeout is only a backstop for a peer that stops taking our output.
    connection_->set_idle_timeout(services_.settings.idle_timeout + std::chrono::seconds(30));
    idle_timer_.start(services_.settings.idle_timeout);
    log::info("connect from {} to {}", client(), port_kind_name(kind_));
    connection_->start();
    connection_->write(fmt::format("220 {}\r\n", services_.settings.banner));
}

void Session::shutdown() {
    if (state_ == State::closing || connection_->closed()) return;
    close_session(Reply{421, "4.3.2", fmt::format("{} Service shutting down, closing connection",
                                                  services_.settings.myhostname)});
}

void Session::on_readable() {
    auto self = shared_from_this();
    if (state_ == State::closing) return;
    if (!waiting_) idle_timer_.start(services_.settings.idle_timeout);
    process_input();
}

void Session::process_input() {
    auto self = shared_from_this();
    while (!waiting_ && state_ != State::closing && !connection_->closed()) {
        bool progressed = false;
        if (chunk_reading_) {
            progressed = read_chunk();
        } else if (state_ == State::data) {
            progressed = read_data_lines();
        } else {
            progressed = read_command_line();
        }
        if (!progressed) break;
        if (connection_->output_size() > kMaxPendingOutput) {
            connection_->pause_reading();
            break;
        }
    }
}

bool Session::read_command_line() {
    event::LineStatus status = connection_->read_line(line_);
    if (status == event::LineStatus::need_more) return false;
    if (status == event::LineStatus::too_long) {
        // RFC 5321 §4.5.3.1.4; the rest of the line is dropped unread and
        // the session goes on.
        current_verb_ = Verb::unknown;
        current_counted_ = true;
        send(500, "5.5.2", "Error: line too long");
        if (state_ == State::sasl) {
            mechanism_.reset();
            state_ = State::greeted;
        }
        return true;
    }
    if (state_ == State::sasl) {
        sasl_response(line_);
    } else {
        dispatch(line_);
    }
    return true;
}

bool Session::read_data_lines() {
    // Lines already buffered are taken in one go: the buffer holds only
    // what one socket read brought, so the work per callback stays bounded.
    for (int lines = 0; lines < 256; ++lines) {
        event::LineStatus status = connection_->read_line(line_);
        if (status == event::LineStatus::need_more) return lines > 0;
        if (status == event::LineStatus::too_long) {
            data_reader_->feed_too_long_line();
            continue;
        }
        std::string_view content;
        if (data_reader_->feed_line(line_, content) == DataReader::Step::end) {
            DataReader reader = std::move(*data_reader_);
            data_reader_.reset();
            connection_->set_max_line_length(services_.settings.command_line_limit);
            // Long lines made the buffer grow; an idle session stays small.
            if (line_.capacity() > 4096) std::string().swap(line_);
            end_of_message(reader.error(), reader.scanner(), reader.ended_after_discarded_line());
            return true;
        }
        if (data_reader_->error() == BodyError::none) store(content);
    }
    return true;
}

void Session::dispatch(std::string_view line) {
    Command command = parse_command(line);
    current_verb_ = command.verb;
    current_counted_ = false;
    ++counts_[static_cast<size_t>(command.verb)].total;
    switch (command.error) {
        case CommandError::none:
            break;
        case CommandError::bad_line_ending:
        case CommandError::bad_character:
        case CommandError::unknown_command:
            send(500, "5.5.2", fmt::format("Error: {}", command.error_text));
            return;
        case CommandError::syntax:
            send(501, "5.5.4", fmt::format("{}", command.error_text));
            return;
    }
    for (const CommandSpec& spec : kCommands) {
        if (spec.verb != command.verb) continue;
        if ((spec.states & bit(state_)) == 0) {
            std::string why = sequence_error(command.verb);
            // RFC 5321 §3.3: DATA with no valid recipient may get 554.
            if (command.verb == Verb::data && state_ == State::mail) {
                send(554, "5.5.1", why);
            } else {
                send(503, "5.5.1", why);
            }
            return;
        }
        (this->*spec.handler)(command);
        // AUTH's initial response carries the password (RFC 4616).
        if (command.verb == Verb::auth) wipe_line();
        return;
    }
    send(500, "5.5.2", "Error: command not recognized");
}

std::string Session::sequence_error(Verb verb) const {
    if (state_ == State::bdat) return "Error: only BDAT, RSET, NOOP or QUIT during a BDAT transfer (RFC 3030)";
    switch (verb) {
        case Verb::mail:
            return state_ == State::fresh ? "Error: send HELO/EHLO first" : "Error: nested MAIL command";
        case Verb::rcpt:
            return "Error: need MAIL command";
        case Verb::data:
            return state_ == State::mail ? "Error: no valid recipients" : "Error: need RCPT command";
        case Verb::starttls:
            return "Error: MAIL transaction in progress";
        case Verb::auth:
            return state_ == State::fresh ? "Error: send EHLO first" : "Error: MAIL transaction in progress";
        case Verb::etrn:
            return state_ == State::fresh ? "Error: send HELO/EHLO first" : "Error: MAIL transaction in progress";
        default:
            return "Error: bad sequence of commands";
    }
}

void Session::send(const Reply& reply) {
    connection_->write(reply.format());
    note_reply(reply.code);
}

void Session::send_lines(int code, std::string_view enhanced, const std::vector<std::string>& lines) {
    connection_->write(format_lines(code, enhanced, lines));
    note_reply(code);
}

void Session::note_reply(int code) {
    if (code >= 200 && code < 300 && !current_counted_) {
        ++counts_[static_cast<size_t>(current_verb_)].ok;
        current_counted_ = true;
    }
    if (code < 400 || code == 421 || state_ == State::closing) return;
    ++errors_;
    if (errors_ >= services_.settings.error_limit) {
        log::info("too many errors after {} from {}", verb_name(current_verb_), client());
        close_session(Reply{421, "4.7.0", fmt::format("{} Error: too many errors", services_.settings.myhostname)});
    }
}

void Session::close_session(const Reply& last) {
    if (state_ == State::closing) return;
    connection_->write(last.format());
    state_ = State::closing;
    idle_timer_.cancel();
    reset_transaction();
    state_ = State::closing;
    connection_->close_after_write();
}

void Session::begin_wait() {
    waiting_ = true;
    // Commands pipelined behind this one stay in the socket buffer (and
    // the kernel's) until its reply is out: input memory stays bounded.
    connection_->pause_reading();
    idle_timer_.cancel();
}

void Session::end_wait() {
    waiting_ = false;
    if (state_ == State::closing || connection_->closed()) return;
    idle_timer_.start(services_.settings.idle_timeout);
    connection_->resume_reading();
    process_input();
}

void Session::on_idle_timeout() {
    auto self = shared_from_this();
    if (state_ == State::closing) {
        connection_->close_after_write();
        return;
    }
    log::info("timeout after {} from {}", verb_name(current_verb_), client());
    close_session(Reply{421, "4.4.2", fmt::format("{} Error: timeout exceeded", services_.settings.myhostname)});
}

void Session::on_closed(event::CloseReason reason) {
    auto self = shared_from_this();
    idle_timer_.cancel();
    if (reason == event::CloseReason::tls_error) log::info("TLS failure with {}", client());
    if (writer_) log::info("{}: lost connection with {} during the message", writer_->queue_id(), client());
    reset_transaction();
    mechanism_.reset();
    // Postfix-style summary: name=ok or name=ok/total when some failed.
    std::string summary;
    size_t ok = 0, total = 0;
    for (size_t i = 0; i < kVerbCount; ++i) {
        const Count& count = counts_[i];
        if (count.total == 0) continue;
        ok += count.ok;
        total += count.total;
        std::string name = ascii::lowercase(verb_name(static_cast<Verb>(i)));
        if (count.ok == count.total) summary += fmt::format(" {}={}", name, count.total);
        else summary += fmt::format(" {}={}/{}", name, count.ok, count.total);
    }
    if (ok == total) summary += fmt::format(" commands={}", total);
    else summary += fmt::format(" commands={}/{}", ok, total);
    log::info("disconnect from {}{}", client(), summary);
    state_ = State::closing;
    if (on_finished_) {
        auto finished = std::move(on_finished_);
        on_finished_ = nullptr;
        finished();
    }
}

}  // namespace facteur::smtpd
