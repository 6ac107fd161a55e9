// The POP3 session state machine: command table, input loop, replies,
// limits, timeouts and the end of a session (see session.hpp).
#include "pop3d/session.hpp"

#include <openssl/rand.h>
#include <unistd.h>

#include <ctime>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/panic.hpp"
#include "libmail/secret.hpp"

namespace facteur::pop3d {
namespace {

constexpr unsigned bit(Session::State state) { return 1u << static_cast<unsigned>(state); }

constexpr unsigned kAuthorization = bit(Session::State::authorization);
constexpr unsigned kTransaction = bit(Session::State::transaction);

// Replies are small; a client that pipelines without reading them is
// stopped from growing our output buffer past this.
constexpr size_t kMaxPendingOutput = 64 * 1024;

// RFC 1939 §7: "<process-ID.clock@hostname>"; the random part makes it
// unique even for two sessions of one process in the same second.
std::string make_timestamp(std::string_view hostname) {
    unsigned char random[8];
    if (RAND_bytes(random, sizeof random) != 1) panic("RAND_bytes failed");
    std::string hex;
    for (unsigned char c : random) hex += fmt::format("{:02x}", c);
    return fmt::format("<{}.{}.{}@{}>", getpid(), hex, static_cast<long long>(std::time(nullptr)), hostname);
}

std::string_view close_reason_name(event::CloseReason reason) {
    switch (reason) {
        case event::CloseReason::peer_closed: return "peer_closed";
        case event::CloseReason::idle_timeout: return "idle_timeout";
        case event::CloseReason::error: return "error";
        case event::CloseReason::local_close: return "local_close";
        case event::CloseReason::tls_error: return "tls_error";
    }
    return "error";
}

}  // namespace

// "What happens on DELE" is found here: the handler and where it is allowed.
// A command in the wrong state gets -ERR and the session goes on.
const Session::CommandSpec Session::kCommands[] = {
    {Keyword::capa, &Session::cmd_capa, kAuthorization | kTransaction},  // RFC 2449 §5
    {Keyword::user, &Session::cmd_user, kAuthorization},
    {Keyword::pass, &Session::cmd_pass, kAuthorization},
    {Keyword::apop, &Session::cmd_apop, kAuthorization},
    {Keyword::auth, &Session::cmd_auth, kAuthorization},  // RFC 5034
    {Keyword::stls, &Session::cmd_stls, kAuthorization},  // RFC 2595 §4
    {Keyword::quit, &Session::cmd_quit, kAuthorization},
    {Keyword::quit, &Session::cmd_quit_transaction, kTransaction},  // enters UPDATE
    {Keyword::noop, &Session::cmd_noop, kTransaction},
    {Keyword::stat, &Session::cmd_stat, kTransaction},
    {Keyword::list, &Session::cmd_list, kTransaction},
    {Keyword::uidl, &Session::cmd_uidl, kTransaction},
    {Keyword::retr, &Session::cmd_retr, kTransaction},
    {Keyword::top, &Session::cmd_top, kTransaction},
    {Keyword::dele, &Session::cmd_dele, kTransaction},
    {Keyword::rset, &Session::cmd_rset, kTransaction},
    {Keyword::last, &Session::cmd_last, kTransaction},  // RFC 1460
};

Session::Session(SessionServices services, std::shared_ptr<event::Connection> connection, PortKind kind)
    : services_(services),
      connection_(std::move(connection)),
      kind_(kind),
      client_address_(connection_->peer_address()),
      idle_timer_(services.loop, [this] { on_idle_timeout(); }),
      delay_timer_(services.loop, [this] {
          auto action = std::move(delayed_);
          delayed_ = nullptr;
          if (action) action();
      }) {}

Session::~Session() {
    wipe_line();
    if (connection_ && !connection_->closed()) {
        connection_->on_close(nullptr);
        connection_->close();
    }
}

void Session::wipe_line() { secret::wipe_capacity(line_); }

std::string Session::client() const { return client_address_; }

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
        if (auto self = weak.lock()) self->on_drained();
    });
    connection_->set_max_line_length(services_.settings.command_line_limit);
    // The session's own timer says "-ERR Disconnected for inactivity." on
    // silence; the connection's timeout is a backstop for a peer that stops
    // taking our output (e.g. in the middle of a RETR).
    connection_->set_idle_timeout(services_.settings.login_idle_timeout + std::chrono::seconds(30));
    restart_idle_timer();
    if (services_.settings.apop) timestamp_ = make_timestamp(services_.settings.myhostname);
    log::info("connect from {} to {}", client(), port_kind_name(kind_));
    connection_->start();
    std::string greeting = "+OK " + services_.settings.banner;
    if (!timestamp_.empty()) greeting += " " + timestamp_;
    connection_->write(greeting + "\r\n");
}

void Session::shutdown() {
    if (state_ == State::closing || state_ == State::update || connection_->closed()) return;
    if (multiline_) {
        // A reply line now would land inside the message: just hang up.
        connection_->close();
        return;
    }
    close_session("-ERR [SYS/TEMP] Server shutting down");
}

void Session::restart_idle_timer() {
    // RFC 1939 §3: at least 10 minutes once logged in; shorter before.
    bool logged_in = state_ == State::transaction;
    idle_timer_.start(logged_in ? services_.settings.idle_timeout : services_.settings.login_idle_timeout);
}

void Session::on_readable() {
    auto self = shared_from_this();
    if (state_ == State::closing || state_ == State::update) return;
    if (!waiting_) restart_idle_timer();
    process_input();
}

void Session::process_input() {
    auto self = shared_from_this();
    // A command that completes at once (a short LIST) calls end_wait from
    // inside this loop: it must not recurse into a second loop, or a
    // pipelined burst of such commands would nest once per command.
    processing_ = true;
    while (!waiting_ && (state_ == State::authorization || state_ == State::sasl || state_ == State::transaction) &&
           !connection_->closed()) {
        event::LineStatus status = connection_->read_line(line_);
        if (status == event::LineStatus::need_more) break;
        if (status == event::LineStatus::too_long) {
            // The rest of the line is dropped unread; the session goes on.
            if (state_ == State::sasl) cancel_sasl();
            err("Line too long");
        } else if (state_ == State::sasl) {
            sasl_response(line_);
        } else {
            dispatch(line_);
        }
        if (connection_->output_size() > kMaxPendingOutput) {
            // Read on once the client has taken its replies (on_drained).
            connection_->pause_reading();
            break;
        }
    }
    processing_ = false;
}

void Session::dispatch(std::string_view line) {
    Command command = parse_command(line);
    switch (command.error) {
        case CommandError::none:
            break;
        case CommandError::empty:
            return err("Empty command");
        case CommandError::bad_character:
            return err("Invalid characters in command");
        case CommandError::unknown_command:
            // Echo the keyword only when it is a harmless word.
            if (command.name.empty()) return err("Unknown command");
            return err(fmt::format("Unknown command: {}", command.name));
    }
    bool known = false;
    for (const CommandSpec& spec : kCommands) {
        if (spec.keyword != command.keyword) continue;
        known = true;
        if ((spec.states & bit(state_)) == 0) continue;
        (this->*spec.handler)(command);
        // PASS and AUTH carry secrets (RFC 1939 §7, RFC 4616).
        if (command.keyword == Keyword::pass || command.keyword == Keyword::auth) wipe_line();
        return;
    }
    if (command.keyword == Keyword::pass) wipe_line();
    if (known) return err(state_error(command.keyword));
    err("Unknown command");
}

std::string Session::state_error(Keyword keyword) const {
    if (state_ == State::transaction) {
        return fmt::format("{} not allowed after login", keyword_name(keyword));
    }
    return fmt::format("{} not allowed before login", keyword_name(keyword));
}

void Session::ok(std::string_view text) {
    connection_->write(text.empty() ? std::string("+OK\r\n") : fmt::format("+OK {}\r\n", text));
}

void Session::err_uncounted(std::string_view text) { connection_->write(fmt::format("-ERR {}\r\n", text)); }

void Session::err(std::string_view text) {
    err_uncounted(text);
    if (state_ == State::closing) return;
    if (++errors_ >= services_.settings.error_limit) {
        log::info("too many bad commands from {} user=<{}>", client(), log::printable(auth_user_));
        close_session("-ERR Too many bad commands, closing connection");
    }
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
    if (state_ == State::closing || state_ == State::update || connection_->closed()) return;
    restart_idle_timer();
    connection_->resume_reading();
    // Inside process_input its loop simply goes on with the next line.
    if (!processing_) process_input();
}

void Session::on_drained() {
    auto self = shared_from_this();
    if (multiline_) return pump();
    // Output caught up: read again what the output limit held back.
    if (!waiting_ && (state_ == State::authorization || state_ == State::sasl || state_ == State::transaction))
        connection_->resume_reading();
}

void Session::on_idle_timeout() {
    auto self = shared_from_this();
    if (state_ == State::closing || state_ == State::update) return;
    log::info("timeout from {} user=<{}>", client(), log::printable(auth_user_));
    close_session("-ERR Disconnected for inactivity.");
}

void Session::close_session(std::string_view last_reply) {
    if (state_ == State::closing) return;
    if (!last_reply.empty()) connection_->write(fmt::format("{}\r\n", last_reply));
    if (state_ == State::sasl) cancel_sasl();
    state_ = State::closing;
    idle_timer_.cancel();
    delay_timer_.cancel();
    delayed_ = nullptr;
    connection_->close_after_write();
}

void Session::on_closed(event::CloseReason reason) {
    auto self = shared_from_this();
    connection_gone_ = true;
    idle_timer_.cancel();
    delay_timer_.cancel();
    delayed_ = nullptr;
    if (reason == event::CloseReason::tls_error) log::info("TLS failure with {}", client());
    mechanism_.reset();
    multiline_.reset();
    state_ = State::closing;
    // QUIT's commit still runs: it finishes the session when done.
    if (commit_running_) return;
    if (mailbox_) {
        // RFC 1939 §6: without QUIT nothing is deleted.
        log::info("disconnect user=<{}> ip={} reason={} retrieved={} bytes={} deleted=0", log::printable(auth_user_),
                  client(), close_reason_name(reason), retrieved_, retrieved_bytes_);
        return save_seen_after_drop();
    }
    log::info("disconnect from {} reason={}", client(), close_reason_name(reason));
    finish();
}

void Session::finish() {
    if (finished_) return;
    finished_ = true;
    mailbox_.reset();  // releases the session lock
    if (on_finished_) {
        auto finished = std::move(on_finished_);
        on_finished_ = nullptr;
        finished();
    }
}

}  // namespace facteur::pop3d
