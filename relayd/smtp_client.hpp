// relayd's SMTP client (RFC 5321) over one TCP connection to one server:
// connect, greeting, EHLO (HELO when EHLO gets 5xx), STARTTLS by policy,
// AUTH to relay hosts, then any number of messages (connection reuse), QUIT.
// The scheduler (relayd/scheduler) decides which server and when; this class
// only speaks SMTP and reports what happened in terms the scheduler and qmgr
// use (Outcome + RFC 3463 code + the remote reply).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libmail/delivery_protocol.hpp"
#include "libmail/event.hpp"
#include "libmail/queue.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace facteur::relayd {

enum class TlsLevel { none, may, encrypt, verify };
std::string_view tls_level_name(TlsLevel level);
std::optional<TlsLevel> parse_tls_level(std::string_view text);

struct Timeouts {
    std::chrono::milliseconds connect{30000}, greeting{300000}, helo{300000}, mail{300000}, rcpt{300000},
        data{120000}, data_block{180000}, data_done{600000}, quit{60000};
};

struct Credentials {
    std::string user, password;
};

struct ClientSettings {
    std::string helo_name;
    Timeouts timeouts;
    std::string bind_address;   // IPv4 source address, empty = any
    std::string bind_address6;  // IPv6 source address, empty = any
    TlsLevel tls = TlsLevel::may;
    SSL_CTX* tls_opportunistic = nullptr;  // no verification (may, encrypt)
    SSL_CTX* tls_verified = nullptr;       // chain + name checked (verify)
    std::optional<Credentials> credentials;  // AUTH PLAIN/LOGIN (only over TLS, or to a loopback address)
};

// One server to try: the name it was found under (MX host or nexthop host:
// used for SNI, certificate name checks and logs) and one numeric address.
struct Server {
    std::string hostname;
    std::string address;  // "192.0.2.1" or "2001:db8::1"
    uint16_t port = 25;
    // "mx.example.org[192.0.2.1]:25" — the relay= of log lines and replies.
    std::string description() const;
};

// Why a connection could not be set up (connect, greeting, EHLO/HELO,
// STARTTLS, AUTH). The scheduler tries the next server; when there is none
// it applies `outcome` (deferred or bounced) with dsn/reason to every
// recipient of the attempt.
struct SetupFailure {
    delivery::Outcome outcome = delivery::Outcome::deferred;
    std::string dsn;     // 4.4.1 (no answer), 4.7.5 (TLS required), 5.x.x from a 5xx greeting ...
    std::string reason;  // "connect to mx.b.test[192.0.2.2]:25: Connection refused",
                         // "host mx.b.test[…] said: 554 5.7.1 go away (in reply to EHLO)"
};

// One message for this connection: the queue file's envelope and the
// recipients (indices into envelope.recipients) this destination gets.
struct Message {
    std::string queue_id;
    std::string queue_file;  // absolute path; the message is read from it
    queue::Envelope envelope;
    std::vector<size_t> recipients;
};

struct RecipientOutcome {
    delivery::Outcome outcome = delivery::Outcome::deferred;
    std::string dsn;
    std::string reason;       // "host … said: 550 5.1.1 no such user (in reply to RCPT TO)"
    bool remote_dsn = false;  // server announced DSN and got NOTIFY/ORCPT for this recipient
};

struct MessageOutcome {
    std::vector<RecipientOutcome> recipients;  // same order as Message::recipients
    // False when the connection cannot carry another message (lost, timed
    // out, 421, protocol confusion): the scheduler drops it.
    bool reusable = false;
};

class SmtpClient : public std::enable_shared_from_this<SmtpClient> {
public:
    using SetupDone = std::function<void(std::optional<SetupFailure> failure)>;

    // Starts a non-blocking connect to `server`, then greeting, EHLO/HELO,
    // STARTTLS (per settings.tls: may = when offered, failure of the
    // handshake -> try again without TLS is NOT done, it is a SetupFailure;
    // encrypt/verify = required), EHLO again after TLS, AUTH when
    // credentials are set. `done` runs once, on the loop, with nullopt when
    // the session is ready for send(), or the failure (the client is then
    // closed). `settings` must outlive the client.
    static std::shared_ptr<SmtpClient> connect(event::Loop& loop, const ClientSettings& settings, Server server,
                                               SetupDone done);
    ~SmtpClient();

    // Sends one message: MAIL FROM (SIZE, BODY, SMTPUTF8, RET/ENVID when the
    // server has DSN), RCPT TO per recipient (NOTIFY/ORCPT when DSN),
    // DATA, the message (dot-stuffed, streamed from the queue file under
    // output back-pressure; 8-bit bodies converted to quoted-printable when
    // the server lacks 8BITMIME, see libmail/mime_downgrade), final dot —
    // pipelined when the server has PIPELINING. Refuses locally, without a
    // transaction: SIZE over the server's limit (5.3.4), SMTPUTF8 needed but
    // not offered (5.6.7), 8-bit that cannot be converted (5.6.3).
    // Only when ready and idle (after setup, or after a previous message's
    // done). `done` runs once on the loop.
    void send(Message message, std::function<void(MessageOutcome)> done);

    // Sends QUIT (waiting at most the quit timeout) and closes. Idempotent;
    // no callback runs afterwards.
    void quit();
    // While idle (between messages, e.g. in the scheduler's connection
    // cache): called once if the server closes or the connection fails.
    void on_lost(std::function<void()> callback);

    bool ready() const;  // set up, idle, usable
    const Server& server() const;
    bool tls_active() const;
    size_t messages_sent() const;  // transactions completed on this connection

private:
    struct Impl;
    explicit SmtpClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace facteur::relayd
