// relayd's SMTP client session: connection set-up (greeting, EHLO/HELO,
// STARTTLS, AUTH) and mail transactions with pipelining, as Postfix's smtp(8).
#include "relayd/smtp_client.hpp"

#include <arpa/inet.h>
#include <openssl/x509.h>

#include <algorithm>
#include <deque>

#include <fmt/format.h>

#include "libmail/base64.hpp"
#include "libmail/log.hpp"
#include "libmail/mime_downgrade.hpp"
#include "libmail/secret.hpp"
#include "relayd/ehlo.hpp"
#include "relayd/smtp_command.hpp"
#include "relayd/smtp_reply.hpp"

namespace facteur::relayd {

using delivery::Outcome;

std::string_view tls_level_name(TlsLevel level) {
    switch (level) {
        case TlsLevel::none: return "none";
        case TlsLevel::may: return "may";
        case TlsLevel::encrypt: return "encrypt";
        case TlsLevel::verify: return "verify";
    }
    return "?";
}

std::optional<TlsLevel> parse_tls_level(std::string_view text) {
    for (TlsLevel level : {TlsLevel::none, TlsLevel::may, TlsLevel::encrypt, TlsLevel::verify})
        if (text == tls_level_name(level)) return level;
    return std::nullopt;
}

std::string Server::description() const {
    const std::string& name = hostname.empty() ? address : hostname;
    return fmt::format("{}[{}]:{}", name, address, port);
}

namespace {

// Output queued beyond this waits for on_drained: the message is pulled
// from the queue file in pieces, never held whole (Postfix streams too).
constexpr size_t kOutputHighWater = 256 * 1024;
constexpr size_t kReadPiece = 64 * 1024;
// QUIT is a courtesy: never hold a connection open long for its reply.
constexpr std::chrono::milliseconds kMaxQuitWait{5000};
// The only in-memory copy of a message: the rare 8BITMIME downgrade.
constexpr uint64_t kMaxDowngradeSize = 256ull << 20;

bool is_loopback(const std::string& address) {
    in_addr v4{};
    if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
        if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
    }
    return false;
}

}  // namespace

struct SmtpClient::Impl {
    enum class Phase { connecting, setup, ready, transaction, quitting, closed };
    enum class Failure { lost, timeout, protocol };
    enum class RecipientState { pending, accepted, decided };

    // One reply we are waiting for, in the order the commands went out.
    struct Expect {
        std::string command;  // for "(in reply to X command)"
        std::string stage;    // for "while X"
        std::chrono::milliseconds timeout;
        std::function<void(const Reply&)> handler;
    };

    struct Transaction {
        Message message;
        std::function<void(MessageOutcome)> done;
        std::optional<queue::Reader> reader;
        std::vector<RecipientState> states;
        MessageOutcome outcome;
        std::vector<size_t> active;  // positions in message.recipients sent as RCPT
        bool pipelined = false;
        bool mail_failed = false;
        size_t next_rcpt = 0;  // without pipelining: the next RCPT to send
        bool eight_bit = false;
        std::optional<std::string> converted;  // 7-bit copy after an 8BITMIME downgrade
        uint64_t size = 0;
        uint64_t offset = 0;
        bool streaming = false;
        DotStuffer stuffer;
    };

    Impl(event::Loop& loop_in, const ClientSettings& settings_in, Server server_in)
        : loop(loop_in),
          settings(settings_in),
          server(std::move(server_in)),
          deadline(loop_in, [this] { on_deadline(); }),
          later(loop_in, [this] { run_later(); }) {}

    event::Loop& loop;
    const ClientSettings& settings;
    Server server;
    std::weak_ptr<SmtpClient> self;
    std::unique_ptr<event::TcpConnect> connecting;
    std::shared_ptr<event::Connection> connection;
    event::Timer deadline;
    event::Timer later;
    std::deque<std::function<void()>> later_queue;
    ReplyParser parser;
    std::deque<Expect> expects;
    Capabilities capabilities;
    Phase phase = Phase::connecting;
    std::string stage = "connecting";
    bool tls = false;
    bool tls_handshaking = false;
    bool need_rset = false;
    size_t sent_count = 0;
    SetupDone setup_done;
    std::function<void()> lost_callback;
    bool lost = false;
    std::unique_ptr<Transaction> transaction;
    std::shared_ptr<SmtpClient> quit_keepalive;

    // ---------------------------------------------------------------- helpers
    std::string host() const {
        return fmt::format("{}[{}]", server.hostname.empty() ? server.address : server.hostname, server.address);
    }
    std::string said(const Reply& reply, std::string_view command) const {
        return fmt::format("host {} said: {} (in reply to {} command)", host(), log::printable(reply.joined(), 2000),
                           command);
    }
    static Outcome outcome_of(const Reply& reply) {
        return reply.kind() == 5 ? Outcome::bounced : reply.kind() == 2 ? Outcome::sent : Outcome::deferred;
    }

    // Runs `function` on a later loop turn with the client kept alive.
    void defer(std::function<void()> function) {
        later_queue.push_back(std::move(function));
        if (!later.pending()) later.start(std::chrono::milliseconds(0));
    }
    void run_later() {
        auto keep = self.lock();
        while (!later_queue.empty()) {
            auto function = std::move(later_queue.front());
            later_queue.pop_front();
            function();
        }
    }

    void send_line(std::string_view line) {
        if (connection) connection->write(line);
    }
    void expect(std::string command, std::string stage_text, std::chrono::milliseconds timeout,
                std::function<void(const Reply&)> handler) {
        expects.push_back({std::move(command), std::move(stage_text), timeout, std::move(handler)});
        if (expects.size() == 1) deadline.start(expects.front().timeout);
    }
    std::string current_stage() const {
        if (transaction && transaction->streaming) return "sending message body";
        if (!expects.empty()) return expects.front().stage;
        return stage;
    }

    // ------------------------------------------------------------ connecting
    void start() {
        bool v6 = server.address.find(':') != std::string::npos;
        const std::string& bind = v6 ? settings.bind_address6 : settings.bind_address;
        connecting = event::connect_tcp(loop, server.address, server.port, bind, settings.timeouts.connect,
                                        [this](Result<UniqueFd> fd) {
                                            auto keep = self.lock();
                                            on_connected(std::move(fd));
                                        });
    }

    void on_connected(Result<UniqueFd> fd) {
        // connecting is destroyed later (we are inside its callback).
        if (!fd) {
            std::string reason = fmt::format("connect to {}: {}", server.description(), fd.error());
            return fail_setup({Outcome::deferred, "4.4.1", std::move(reason)}, false);
        }
        connection = event::Connection::create(loop, std::move(*fd));
        connection->set_max_line_length(kMaxReplyLine);
        connection->on_readable([this] {
            auto keep = self.lock();
            on_readable();
        });
        connection->on_close([this](event::CloseReason) {
            auto keep = self.lock();
            on_connection_closed();
        });
        connection->on_drained([this] {
            auto keep = self.lock();
            if (transaction && transaction->streaming) pump_body();
        });
        connection->start();
        phase = Phase::setup;
        expect("initial greeting", "receiving the initial server greeting", settings.timeouts.greeting,
               [this](const Reply& reply) { on_greeting(reply); });
    }

    // --------------------------------------------------------------- reading
    void on_readable() {
        while (connection && !connection->closed() && phase != Phase::closed) {
            std::string line;
            event::LineStatus status = connection->read_line(line);
            if (status == event::LineStatus::need_more) return;
            if (status == event::LineStatus::too_long)
                return fail(Failure::protocol, fmt::format("reply line longer than {} bytes", kMaxReplyLine));
            ReplyParser::State state = parser.add(line);
            if (state == ReplyParser::State::error) return fail(Failure::protocol, parser.error());
            if (state == ReplyParser::State::more) continue;
            dispatch(parser.take());
        }
    }

    void dispatch(const Reply& reply) {
        if (phase == Phase::quitting) return close_quietly();
        if (expects.empty()) {
            // A server that speaks while we are idle is closing (421 on
            // its idle timeout) or confused: either way the connection is gone.
            if (phase == Phase::ready)
                log::warning("relayd: unexpected reply from {} while idle: {}", host(), log::printable(reply.joined()));
            else
                log::warning("relayd: unexpected reply from {}: {}", host(), log::printable(reply.joined()));
            return fail(Failure::lost, {});
        }
        Expect current = std::move(expects.front());
        expects.pop_front();
        if (!expects.empty())
            deadline.start(expects.front().timeout);
        else
            deadline.cancel();
        // RFC 5321 §3.8: 421 means the server is closing the channel,
        // whatever the command was.
        if (reply.code == 421) return server_closing(reply, current.command);
        current.handler(reply);
    }

    void on_deadline() {
        auto keep = self.lock();
        if (phase == Phase::quitting) return close_quietly();
        fail(Failure::timeout, {});
    }

    void on_connection_closed() {
        if (phase == Phase::closed) return;
        if (phase == Phase::quitting) return close_quietly();
        fail(Failure::lost, {});
    }

    // The connection cannot go on: lost, timed out, or protocol confusion.
    void fail(Failure kind, const std::string& detail) {
        std::string while_stage = current_stage();
        std::string reason, dsn = "4.4.2";
        switch (kind) {
            case Failure::lost: reason = fmt::format("lost connection with {} while {}", host(), while_stage); break;
            case Failure::timeout:
                reason = fmt::format("conversation with {} timed out while {}", host(), while_stage);
                break;
            case Failure::protocol:
                dsn = "4.5.0";
                reason = fmt::format("protocol error with {} while {}: {}", host(), while_stage, detail);
                log::warning("relayd: {}", reason);
                break;
        }
        switch (phase) {
            case Phase::connecting:
            case Phase::setup: return fail_setup({Outcome::deferred, dsn, reason}, false);
            case Phase::transaction: return abort_transaction(dsn, reason);
            case Phase::ready: return connection_lost();
            case Phase::quitting: return close_quietly();
            case Phase::closed: return;
        }
    }

    void server_closing(const Reply& reply, const std::string& command) {
        std::string reason = said(reply, command);
        if (phase == Phase::setup) return fail_setup({Outcome::deferred, reply.dsn(), reason}, false);
        if (phase == Phase::transaction) return abort_transaction(reply.dsn(), reason);
        connection_lost();
    }

    void close_connection() {
        phase = Phase::closed;
        expects.clear();
        deadline.cancel();
        connecting.reset();
        if (auto keep = connection) {
            keep->on_readable(nullptr);
            keep->on_close(nullptr);
            keep->on_drained(nullptr);
            keep->close();
        }
    }

    void close_quietly() {
        close_connection();
        // Inside a callback: release the QUIT keep-alive on a later turn,
        // after the caller's frames are gone.
        if (quit_keepalive) {
            auto keepalive = std::move(quit_keepalive);
            quit_keepalive = nullptr;
            defer([keepalive] {});
        }
    }

    void connection_lost() {
        close_connection();
        lost = true;
        if (lost_callback) {
            auto callback = std::move(lost_callback);
            lost_callback = nullptr;
            defer(std::move(callback));
        }
    }

    // ----------------------------------------------------------------- setup
    void fail_setup(SetupFailure failure, bool send_quit) {
        if (send_quit && connection && !connection->closed()) {
            // RFC 5321 §3.1: after a 554 greeting the client sends QUIT.
            phase = Phase::closed;
            expects.clear();
            deadline.cancel();
            connection->on_readable(nullptr);
            connection->on_close(nullptr);
            connection->write("QUIT\r\n");
            connection->close_after_write();
        } else {
            close_connection();
        }
        phase = Phase::closed;
        if (setup_done) {
            auto done = std::move(setup_done);
            setup_done = nullptr;
            defer([done = std::move(done), failure = std::move(failure)] { done(failure); });
        }
    }

    void on_greeting(const Reply& reply) {
        if (reply.code == 220 || reply.kind() == 2) return send_ehlo();
        if (reply.kind() == 4 || reply.kind() == 5)
            return fail_setup(
                {outcome_of(reply), reply.dsn(),
                 fmt::format("host {} refused to talk to me: {}", host(), log::printable(reply.joined(), 2000))},
                true);
        fail(Failure::protocol, fmt::format("unexpected greeting: {}", log::printable(reply.joined())));
    }

    void send_ehlo() {
        send_line(fmt::format("EHLO {}\r\n", settings.helo_name));
        expect("EHLO", "performing the EHLO handshake", settings.timeouts.helo,
               [this](const Reply& reply) { on_ehlo(reply); });
    }

    void on_ehlo(const Reply& reply) {
        if (reply.positive()) {
            capabilities = parse_ehlo(reply);
            return after_ehlo();
        }
        // RFC 5321 §3.2: a server that does not know EHLO answers 5xx
        // (502, 500, ...): fall back to HELO. After TLS, HELO would drop the
        // extensions the session was set up for; that is a failure.
        if (reply.kind() == 5 && !tls) {
            send_line(fmt::format("HELO {}\r\n", settings.helo_name));
            expect("HELO", "performing the HELO handshake", settings.timeouts.helo,
                   [this](const Reply& helo) { on_helo(helo); });
            return;
        }
        fail_setup({reply.kind() == 5 ? Outcome::bounced : Outcome::deferred, reply.dsn(), said(reply, "EHLO")}, true);
    }

    void on_helo(const Reply& reply) {
        if (!reply.positive()) return fail_setup({outcome_of(reply), reply.dsn(), said(reply, "HELO")}, true);
        capabilities = Capabilities{};
        after_ehlo();
    }

    void after_ehlo() {
        if (!tls && settings.tls != TlsLevel::none) {
            bool required = settings.tls == TlsLevel::encrypt || settings.tls == TlsLevel::verify;
            SSL_CTX* context = settings.tls == TlsLevel::verify ? settings.tls_verified : settings.tls_opportunistic;
            if (!capabilities.starttls) {
                if (required)
                    return fail_setup({Outcome::deferred, "4.7.4",
                                       fmt::format("TLS is required, but was not offered by host {}", host())},
                                      true);
            } else if (context == nullptr) {
                if (required)
                    return fail_setup(
                        {Outcome::deferred, "4.7.5", "TLS is required, but no TLS client context is configured"}, true);
                log::warning("relayd: no TLS client context: sending to {} without TLS", host());
            } else {
                send_line("STARTTLS\r\n");
                expect("STARTTLS", "sending STARTTLS", settings.timeouts.helo,
                       [this, required, context](const Reply& reply) { on_starttls(reply, required, context); });
                return;
            }
        }
        authenticate();
    }

    void on_starttls(const Reply& reply, bool required, SSL_CTX* context) {
        if (reply.code != 220) {
            if (required)
                return fail_setup({Outcome::deferred, "4.7.5",
                                   fmt::format("TLS is required, but host {} refused to start TLS: {}", host(),
                                               log::printable(reply.joined(), 2000))},
                                  true);
            // Opportunistic (RFC 7435): plain text is what we would have
            // done had the server not offered STARTTLS at all.
            log::warning("relayd: host {} refused STARTTLS: {}; continuing without TLS", host(),
                         log::printable(reply.joined()));
            return authenticate();
        }
        stage = "performing the TLS handshake";
        tls_handshaking = true;
        deadline.start(settings.timeouts.helo);
        std::string name = server.hostname.empty() ? server.address : server.hostname;
        connection->start_tls_client(context, name, [this](bool ok) {
            auto keep = self.lock();
            on_tls_done(ok);
        });
    }

    void on_tls_done(bool ok) {
        tls_handshaking = false;
        if (phase == Phase::closed) return;
        deadline.cancel();
        if (!ok) {
            std::string error = connection ? connection->tls_error() : std::string("connection closed");
            std::string reason = settings.tls == TlsLevel::verify && error.starts_with("certificate verification")
                                     ? fmt::format("TLS is required, but {} for host {}", error, host())
                                     : fmt::format("TLS handshake failed with host {}: {}", host(), error);
            return fail_setup({Outcome::deferred, "4.7.5", reason}, false);
        }
        tls = true;
        const char* trust = "Anonymous";
        if (settings.tls == TlsLevel::verify)
            trust = "Verified";
        else if (connection->tls_peer_has_certificate())
            trust = connection->tls_verify_result() == X509_V_OK ? "Trusted" : "Untrusted";
        log::info("{} TLS connection established to {}: {} with cipher {} ({} bits)", trust, server.description(),
                  connection->tls_version(), connection->tls_cipher(), connection->tls_cipher_bits());
        // RFC 3207 §4.2: forget what the server said before TLS, ask again.
        capabilities = Capabilities{};
        stage = "performing the EHLO handshake";
        send_ehlo();
    }

    void authenticate() {
        if (!settings.credentials) return setup_complete();
        if (capabilities.auth.empty()) {
            log::warning("relayd: host {} offers no AUTH; sending without authentication", host());
            return setup_complete();
        }
        if (!tls && !is_loopback(server.address))
            return fail_setup(
                {Outcome::deferred, "4.7.0", fmt::format("will not send credentials in clear text to host {}", host())},
                true);
        const Credentials& credentials = *settings.credentials;
        if (capabilities.has_auth("PLAIN")) {
            // RFC 4616: authzid NUL authcid NUL passwd, as an initial
            // response (RFC 4954 §4).
            std::string secret;
            secret.reserve(credentials.user.size() + credentials.password.size() + 2);
            secret += '\0';
            secret += credentials.user;
            secret += '\0';
            secret += credentials.password;
            std::string line = "AUTH PLAIN " + base64::encode(secret) + "\r\n";
            send_line(line);
            secret::wipe(secret);
            secret::wipe(line);
            expect("AUTH", "authenticating", settings.timeouts.helo,
                   [this](const Reply& reply) { on_auth_result(reply); });
            return;
        }
        if (capabilities.has_auth("LOGIN")) {
            send_line("AUTH LOGIN\r\n");
            expect("AUTH", "authenticating", settings.timeouts.helo, [this](const Reply& reply) {
                if (reply.code != 334) return on_auth_result(reply);
                std::string line = base64::encode(settings.credentials->user) + "\r\n";
                send_line(line);
                secret::wipe(line);
                expect("AUTH", "authenticating", settings.timeouts.helo, [this](const Reply& second) {
                    if (second.code != 334) return on_auth_result(second);
                    std::string password = base64::encode(settings.credentials->password) + "\r\n";
                    send_line(password);
                    secret::wipe(password);
                    expect("AUTH", "authenticating", settings.timeouts.helo,
                           [this](const Reply& last) { on_auth_result(last); });
                });
            });
            return;
        }
        std::string offered;
        for (const std::string& mechanism : capabilities.auth) offered += (offered.empty() ? "" : " ") + mechanism;
        fail_setup({Outcome::deferred, "4.7.0",
                    fmt::format("SASL authentication failed: host {} offers none "
                                "of PLAIN, LOGIN (offers {})",
                                host(), log::printable(offered))},
                   true);
    }

    void on_auth_result(const Reply& reply) {
        if (reply.code == 235 || reply.positive()) return setup_complete();
        // Wrong credentials are the admin's to fix: the mail waits
        // (deferred), it must not bounce (RFC 4954 §6: 535 = 5.7.8).
        std::string dsn = reply.code == 535 ? "4.7.8" : with_class(reply.dsn(), '4');
        if (reply.kind() == 3) {
            send_line("*\r\n");  // RFC 4954 §4: cancel an exchange we cannot finish
            dsn = "4.7.0";
        }
        fail_setup({Outcome::deferred, dsn,
                    fmt::format("SASL authentication failed; server {} said: {}", host(),
                                log::printable(reply.joined(), 2000))},
                   true);
    }

    void setup_complete() {
        phase = Phase::ready;
        stage = "idle";
        if (setup_done) {
            auto done = std::move(setup_done);
            setup_done = nullptr;
            defer([done = std::move(done)] { done(std::nullopt); });
        }
    }

    // ----------------------------------------------------------- transaction
    void begin_send(Message message, std::function<void(MessageOutcome)> done) {
        if (phase != Phase::ready || transaction) {
            // The scheduler's mistake, or a race with a close: the message
            // waits; this connection's state is left as it is.
            log::warning("relayd: {}: send() on a connection to {} that is not ready", message.queue_id, host());
            MessageOutcome outcome;
            outcome.recipients.resize(message.recipients.size());
            for (RecipientOutcome& r : outcome.recipients)
                r = {Outcome::deferred, "4.4.2", fmt::format("connection with {} is not ready to send", host()), false};
            outcome.reusable = false;
            if (done)
                defer([done = std::move(done), outcome = std::move(outcome)]() mutable { done(std::move(outcome)); });
            return;
        }
        auto tx = std::make_unique<Transaction>();
        tx->message = std::move(message);
        tx->done = std::move(done);
        const size_t count = tx->message.recipients.size();
        tx->states.assign(count, RecipientState::pending);
        tx->outcome.recipients.resize(count);
        transaction = std::move(tx);
        Transaction& t = *transaction;
        phase = Phase::transaction;
        const queue::Envelope& envelope = t.message.envelope;
        for (size_t i = 0; i < count; ++i) {
            if (t.message.recipients[i] >= envelope.recipients.size())
                decide(i, Outcome::deferred, "4.3.0", "relayd: recipient index out of range");
        }
        auto reader = queue::Reader::open(t.message.queue_file);
        if (!reader) {
            decide_all_pending(Outcome::deferred, "4.3.0",
                               fmt::format("cannot read queue file {}: {}", t.message.queue_file, reader.error()));
            return finish_transaction(true);
        }
        t.reader.emplace(std::move(*reader));
        t.size = t.reader->message_size();

        // RFC 6531 §3.4: a message that needs SMTPUTF8 cannot go to a server
        // without it. Only the addresses decide; recipients with ASCII
        // addresses still go.
        if (envelope.smtputf8 && !capabilities.smtputf8) {
            std::string reason = fmt::format("SMTPUTF8 is required, but was not offered by host {}", host());
            bool sender_utf8 = has_non_ascii(envelope.sender);
            for (size_t i = 0; i < count; ++i) {
                if (t.states[i] != RecipientState::pending) continue;
                if (sender_utf8 || has_non_ascii(envelope.recipients[t.message.recipients[i]].address))
                    decide(i, Outcome::bounced, "5.6.7", reason);
            }
        }
        // RFC 6152 §3: 8-bit data only to a server that announced 8BITMIME;
        // otherwise convert it (or refuse rather than damage it).
        t.eight_bit = envelope.body != queue::BodyType::seven_bit;
        if (t.eight_bit && !capabilities.eightbitmime && any_pending()) {
            auto text = t.reader->message(kMaxDowngradeSize);
            if (!text) {
                decide_all_pending(Outcome::deferred, "4.3.0",
                                   fmt::format("cannot read queue file {}: {}", t.message.queue_file, text.error()));
                return finish_transaction(true);
            }
            if (mime::has_8bit(*text)) {
                auto converted = mime::downgrade_to_7bit(*text);
                if (!converted) {
                    decide_all_pending(Outcome::bounced, "5.6.3",
                                       fmt::format("host {} does not support 8BITMIME "
                                                   "and the message cannot be converted "
                                                   "to 7 bit: {}",
                                                   host(), converted.error()));
                } else {
                    t.converted = std::move(*converted);
                    t.size = t.converted->size();
                }
            }
            t.eight_bit = false;
        }
        // RFC 1870 §6: do not send what the server said it will refuse.
        if (capabilities.size_limit > 0 && t.size > capabilities.size_limit)
            decide_all_pending(Outcome::bounced, "5.3.4",
                               fmt::format("message too big for host {} ({} bytes, limit {})", host(), t.size,
                                           capabilities.size_limit));
        for (size_t i = 0; i < count; ++i)
            if (t.states[i] == RecipientState::pending) t.active.push_back(i);
        if (t.active.empty()) return finish_transaction(true);

        if (need_rset) {
            send_line("RSET\r\n");
            expect("RSET", "sending RSET", settings.timeouts.helo, [this](const Reply& reply) {
                if (!reply.positive())
                    return fail(Failure::protocol, fmt::format("RSET refused: {}", log::printable(reply.joined())));
                need_rset = false;
                send_envelope();
            });
            return;
        }
        send_envelope();
    }

    bool any_pending() const {
        return std::any_of(transaction->states.begin(), transaction->states.end(),
                           [](RecipientState s) { return s == RecipientState::pending; });
    }

    void decide(size_t i, Outcome outcome, std::string dsn, std::string reason) {
        Transaction& t = *transaction;
        t.states[i] = RecipientState::decided;
        RecipientOutcome& r = t.outcome.recipients[i];
        r.outcome = outcome;
        r.dsn = std::move(dsn);
        r.reason = std::move(reason);
    }

    void decide_all_pending(Outcome outcome, const std::string& dsn, const std::string& reason) {
        for (size_t i = 0; i < transaction->states.size(); ++i)
            if (transaction->states[i] != RecipientState::decided) decide(i, outcome, dsn, reason);
    }

    const queue::Recipient& recipient_at(size_t position) const {
        const Transaction& t = *transaction;
        return t.message.envelope.recipients[t.message.recipients[position]];
    }

    void send_envelope() {
        Transaction& t = *transaction;
        t.pipelined = capabilities.pipelining;
        std::string mail = mail_command(t.message.envelope, capabilities, t.size, t.eight_bit);
        if (!t.pipelined) {
            send_line(mail);
            expect("MAIL FROM", "sending MAIL FROM", settings.timeouts.mail,
                   [this](const Reply& reply) { on_mail(reply); });
            return;
        }
        // RFC 2920 §3.1: MAIL, every RCPT and DATA in one write; the
        // replies come back in order.
        std::string batch = std::move(mail);
        for (size_t position : t.active) batch += rcpt_command(recipient_at(position), capabilities);
        batch += "DATA\r\n";
        send_line(batch);
        expect("MAIL FROM", "sending MAIL FROM", settings.timeouts.mail,
               [this](const Reply& reply) { on_mail(reply); });
        for (size_t position : t.active)
            expect("RCPT TO", "sending RCPT TO", settings.timeouts.rcpt,
                   [this, position](const Reply& reply) { on_rcpt(position, reply); });
        expect("DATA", "sending DATA command", settings.timeouts.data, [this](const Reply& reply) { on_data(reply); });
    }

    void send_next_rcpt() {
        Transaction& t = *transaction;
        size_t position = t.active[t.next_rcpt++];
        send_line(rcpt_command(recipient_at(position), capabilities));
        expect("RCPT TO", "sending RCPT TO", settings.timeouts.rcpt,
               [this, position](const Reply& reply) { on_rcpt(position, reply); });
    }

    bool any_accepted() const {
        return std::any_of(transaction->states.begin(), transaction->states.end(),
                           [](RecipientState s) { return s == RecipientState::accepted; });
    }

    void on_mail(const Reply& reply) {
        Transaction& t = *transaction;
        if (!reply.positive()) {
            t.mail_failed = true;
            for (size_t position : t.active) decide(position, outcome_of(reply), reply.dsn(), said(reply, "MAIL FROM"));
            // Pipelined: the RCPT and DATA replies are still on their way.
            if (!t.pipelined) return end_without_data();
            return;
        }
        if (!t.pipelined) send_next_rcpt();
    }

    void on_rcpt(size_t position, const Reply& reply) {
        Transaction& t = *transaction;
        if (!t.mail_failed) {
            if (reply.positive()) {
                t.states[position] = RecipientState::accepted;
                t.outcome.recipients[position].remote_dsn = capabilities.dsn;
            } else {
                decide(position, outcome_of(reply), reply.dsn(), said(reply, "RCPT TO"));
            }
        }
        if (t.pipelined) return;
        if (t.next_rcpt < t.active.size()) return send_next_rcpt();
        if (!any_accepted()) return end_without_data();
        send_line("DATA\r\n");
        expect("DATA", "sending DATA command", settings.timeouts.data, [this](const Reply& reply) { on_data(reply); });
    }

    void on_data(const Reply& reply) {
        Transaction& t = *transaction;
        bool usable = !t.mail_failed && any_accepted();
        if (reply.code == 354) {
            if (!usable) {
                // A pipelined DATA accepted with no valid recipient (the
                // server should have said 503/554): send an empty message
                // end and ignore the reply, as Postfix does.
                send_line(".\r\n");
                expect("end of DATA", "sending end of data", settings.timeouts.data_done,
                       [this](const Reply&) { end_without_data(); });
                return;
            }
            return start_body();
        }
        if (reply.kind() != 4 && reply.kind() != 5)
            return fail(Failure::protocol, fmt::format("unexpected reply to DATA: {}", log::printable(reply.joined())));
        if (usable) {
            for (size_t i = 0; i < t.states.size(); ++i)
                if (t.states[i] == RecipientState::accepted)
                    decide(i, outcome_of(reply), reply.dsn(), said(reply, "DATA"));
        }
        end_without_data();
    }

    // The transaction ended before any message data: the next one starts
    // with RSET (RFC 5321 §4.1.1.5), the connection stays usable.
    void end_without_data() {
        need_rset = true;
        finish_transaction(true);
    }

    void start_body() {
        Transaction& t = *transaction;
        t.streaming = true;
        t.offset = 0;
        pump_body();
    }

    void pump_body() {
        Transaction& t = *transaction;
        if (!t.streaming || !connection || connection->closed()) return;
        // Each burst of progress re-arms the per-block deadline
        // (RFC 5321 §4.5.3.2.5: 3 minutes per data block).
        deadline.start(settings.timeouts.data_block);
        std::string out;
        while (t.offset < t.size && connection->output_size() + out.size() < kOutputHighWater) {
            std::string piece;
            if (t.converted) {
                piece = t.converted->substr(static_cast<size_t>(t.offset), kReadPiece);
            } else {
                auto read = t.reader->read_range(t.offset, kReadPiece);
                if (!read || read->empty()) {
                    // Half a message is out: ending it with a dot would
                    // deliver it truncated. Only dropping the connection is safe.
                    std::string error = read ? "queue file shorter than its size record" : read.error();
                    log::error("{}: cannot read queue file {}: {}", t.message.queue_id, t.message.queue_file, error);
                    return abort_transaction("4.3.0", fmt::format("cannot read queue file: {}", error));
                }
                piece = std::move(*read);
            }
            t.offset += piece.size();
            t.stuffer.add(piece, out);
        }
        if (!out.empty()) send_line(out);
        if (t.offset < t.size) return;  // on_drained calls again
        t.streaming = false;
        send_line(t.stuffer.finish());
        deadline.cancel();
        expect("end of DATA", "sending end of data -- message may be sent more than once", settings.timeouts.data_done,
               [this](const Reply& reply) { on_data_done(reply); });
    }

    void on_data_done(const Reply& reply) {
        Transaction& t = *transaction;
        // RFC 5321 §4.1.1.4: the reply after the dot applies to every
        // recipient accepted at RCPT.
        for (size_t i = 0; i < t.states.size(); ++i) {
            if (t.states[i] != RecipientState::accepted) continue;
            if (reply.positive())
                decide(i, Outcome::sent, reply.dsn(), log::printable(reply.joined(), 2000));
            else
                decide(i, outcome_of(reply), reply.dsn(), said(reply, "end of DATA"));
        }
        if (reply.positive()) ++sent_count;
        finish_transaction(true);
    }

    // Lost, timed out, 421, protocol error or unreadable file in the middle:
    // every recipient without an outcome yet is deferred; the connection goes.
    void abort_transaction(const std::string& dsn, const std::string& reason) {
        decide_all_pending(Outcome::deferred, dsn, reason);
        close_connection();
        finish_transaction(false);
    }

    void finish_transaction(bool reusable) {
        auto tx = std::move(transaction);
        transaction = nullptr;
        if (phase == Phase::transaction) phase = reusable ? Phase::ready : Phase::closed;
        if (!reusable && phase != Phase::closed) close_connection();
        stage = "idle";
        tx->outcome.reusable = reusable && phase == Phase::ready;
        // Every recipient has an outcome by now; a slot left undecided
        // would be a bug, reported as deferred rather than as "sent".
        for (size_t i = 0; i < tx->states.size(); ++i)
            if (tx->states[i] != RecipientState::decided) {
                RecipientOutcome& r = tx->outcome.recipients[i];
                r.outcome = Outcome::deferred;
                r.dsn = "4.3.0";
                r.reason = "relayd: no outcome for this recipient";
            }
        if (tx->done) {
            defer(
                [done = std::move(tx->done), outcome = std::move(tx->outcome)]() mutable { done(std::move(outcome)); });
        }
    }

    // ------------------------------------------------------------------ quit
    void quit() {
        setup_done = nullptr;
        lost_callback = nullptr;
        if (transaction) transaction->done = nullptr;
        if (phase == Phase::closed || phase == Phase::quitting) return;
        connecting.reset();
        // In the middle of DATA or of a TLS handshake, "QUIT" would be
        // message text or garbage: just close.
        bool clean =
            connection && !connection->closed() && !(transaction && transaction->streaming) && !tls_handshaking;
        if (!clean) {
            transaction.reset();
            close_connection();
            return;
        }
        transaction.reset();
        phase = Phase::quitting;
        expects.clear();
        send_line("QUIT\r\n");
        quit_keepalive = self.lock();
        deadline.start(std::min(settings.timeouts.quit, kMaxQuitWait));
    }
};

std::shared_ptr<SmtpClient> SmtpClient::connect(event::Loop& loop, const ClientSettings& settings, Server server,
                                                SetupDone done) {
    auto impl = std::make_unique<Impl>(loop, settings, std::move(server));
    impl->setup_done = std::move(done);
    Impl* raw = impl.get();
    // make_shared needs a public constructor; this local class has one.
    struct Enabler : SmtpClient {
        explicit Enabler(std::unique_ptr<Impl> p) : SmtpClient(std::move(p)) {}
    };
    std::shared_ptr<SmtpClient> client = std::make_shared<Enabler>(std::move(impl));
    raw->self = client;
    raw->start();
    return client;
}

SmtpClient::SmtpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SmtpClient::~SmtpClient() = default;

void SmtpClient::send(Message message, std::function<void(MessageOutcome)> done) {
    impl_->begin_send(std::move(message), std::move(done));
}

void SmtpClient::quit() { impl_->quit(); }

void SmtpClient::on_lost(std::function<void()> callback) {
    if (impl_->lost && impl_->phase == Impl::Phase::closed) {
        // Lost before anyone listened: still tell, once, on the loop.
        impl_->lost = false;
        if (callback) impl_->defer(std::move(callback));
        return;
    }
    impl_->lost_callback = std::move(callback);
}

bool SmtpClient::ready() const { return impl_->phase == Impl::Phase::ready && !impl_->transaction; }

const Server& SmtpClient::server() const { return impl_->server; }

bool SmtpClient::tls_active() const { return impl_->tls; }

size_t SmtpClient::messages_sent() const { return impl_->sent_count; }

}  // namespace facteur::relayd
