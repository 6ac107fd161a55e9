// relayd's SMTP client against a scripted fake SMTP server (a thread with
// blocking sockets and OpenSSL), plus its pure helpers: reply assembly,
// EHLO keywords, command parameters, xtext, dot-stuffing, read_range.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "libmail/base64.hpp"
#include "libmail/queue.hpp"
#include "libmail/tls.hpp"
#include "relayd/ehlo.hpp"
#include "relayd/smtp_client.hpp"
#include "relayd/smtp_command.hpp"
#include "relayd/smtp_reply.hpp"
#include "tests/unit/test_support.hpp"

using namespace facteur;
using namespace facteur::relayd;
using delivery::Outcome;
using test::TempDir;

namespace {

// ---------------------------------------------------------------------------
// The fake server: one thread, one connection at a time, blocking I/O with a
// receive timeout so a client that stalls fails the script instead of
// hanging the test. Checks are recorded and asserted on the main thread
// (Catch2 assertions are not thread-safe).
class FakeSession {
public:
    explicit FakeSession(int fd) : fd_(fd) {
        timeval tv{3, 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~FakeSession() {
        if (ssl_ != nullptr) SSL_free(ssl_);
        ::close(fd_);
    }

    // One line including CRLF; empty on EOF or timeout.
    std::string line() {
        for (;;) {
            size_t end = buffer_.find("\r\n");
            if (end != std::string::npos) {
                std::string out = buffer_.substr(0, end + 2);
                buffer_.erase(0, end + 2);
                received += out;
                return out;
            }
            if (!fill()) return {};
        }
    }
    // Reads a command line and records an error unless it starts with `prefix`.
    std::string expect(const std::string& prefix) {
        std::string got = line();
        if (got.rfind(prefix, 0) != 0) errors.push_back("expected " + prefix + ", got [" + got + "]");
        return got;
    }
    // The DATA bytes up to and including "\r\n.\r\n" (still dot-stuffed).
    std::string data() {
        for (;;) {
            size_t end = buffer_.rfind(".\r\n", 0) == 0 ? 0 : std::string::npos;
            size_t length = 3;
            if (end == std::string::npos) {
                end = buffer_.find("\r\n.\r\n");
                length = end + 5;
            }
            if (end != std::string::npos) {
                std::string out = buffer_.substr(0, length);
                buffer_.erase(0, length);
                received += out;
                return out;
            }
            if (!fill()) return buffer_;
        }
    }
    void send(const std::string& text) {
        std::string out = text + "\r\n";
        if (ssl_ != nullptr)
            SSL_write(ssl_, out.data(), static_cast<int>(out.size()));
        else
            ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
    }
    // True when more bytes arrive (or are buffered) within `ms`: used to check
    // that a client without PIPELINING waits for each reply.
    bool more_within(int ms) {
        if (!buffer_.empty()) return true;
        if (ssl_ != nullptr && SSL_pending(ssl_) > 0) return true;
        pollfd p{fd_, POLLIN, 0};
        return poll(&p, 1, ms) > 0;
    }
    bool tls_accept(SSL_CTX* ctx) {
        ssl_ = SSL_new(ctx);
        SSL_set_fd(ssl_, fd_);
        if (SSL_accept(ssl_) != 1) {
            ERR_clear_error();
            return false;
        }
        return true;
    }
    void close() { ::shutdown(fd_, SHUT_RDWR); }

    std::string received;
    std::vector<std::string> errors;

private:
    bool fill() {
        char chunk[16384];
        ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, chunk, sizeof chunk) : ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buffer_.append(chunk, static_cast<size_t>(n));
        return true;
    }
    int fd_;
    SSL* ssl_ = nullptr;
    std::string buffer_;
};

class FakeServer {
public:
    using Script = std::function<void(FakeSession&)>;
    // Serves `scripts.size()` connections in turn.
    explicit FakeServer(std::vector<Script> scripts) {
        listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(listen(listen_fd_, 8) == 0);
        socklen_t length = sizeof address;
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port = ntohs(address.sin_port);
        thread_ = std::thread([this, scripts = std::move(scripts)] {
            for (const Script& script : scripts) {
                pollfd p{listen_fd_, POLLIN, 0};
                if (poll(&p, 1, 5000) <= 0) {
                    record({"no connection came"}, "");
                    return;
                }
                int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) return;
                FakeSession session(fd);
                script(session);
                record(session.errors, session.received);
            }
        });
    }
    explicit FakeServer(Script script) : FakeServer(std::vector<Script>{std::move(script)}) {}
    ~FakeServer() {
        join();
        ::close(listen_fd_);
    }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    // After join(): what the server saw.
    std::vector<std::string> errors;
    std::vector<std::string> transcripts;
    uint16_t port = 0;

private:
    void record(const std::vector<std::string>& e, const std::string& received) {
        std::lock_guard lock(mutex_);
        errors.insert(errors.end(), e.begin(), e.end());
        transcripts.push_back(received);
    }
    int listen_fd_ = -1;
    std::thread thread_;
    std::mutex mutex_;
};

// A typical ESMTP server's first steps.
void greet(FakeSession& s, const std::string& extensions =
                               "250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n"
                               "250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8") {
    s.send("220 mx.b.test ESMTP fake");
    s.expect("EHLO relay.a.test");
    s.send("250-mx.b.test\r\n" + extensions);
}

// The client ends every session with QUIT (RFC 5321 §4.1.1.10), also after
// a refusal at set-up (§3.1).
void quit_if_asked(FakeSession& s) {
    std::string last = s.line();
    if (last != "QUIT\r\n") s.errors.push_back("expected QUIT, got [" + last + "]");
    s.send("221 2.0.0 bye");
}

// ---------------------------------------------------------------------------
// The client side.
struct Harness {
    TempDir dir;
    queue::Spool spool{dir.path};
    event::Loop loop;
    ClientSettings settings;

    Harness() {
        REQUIRE(spool.create_folders());
        settings.helo_name = "relay.a.test";
        settings.tls = TlsLevel::none;
        settings.timeouts.connect = std::chrono::milliseconds(2000);
        settings.timeouts.greeting = settings.timeouts.helo = settings.timeouts.mail = settings.timeouts.rcpt =
            settings.timeouts.data = settings.timeouts.data_block = settings.timeouts.data_done =
                std::chrono::milliseconds(4000);
    }

    Message message(const std::string& body, std::vector<queue::Recipient> recipients,
                    std::string sender = "alice@a.test") {
        queue::Envelope envelope;
        envelope.queue_id = queue::new_queue_id();
        envelope.sender = std::move(sender);
        envelope.recipients = std::move(recipients);
        auto writer = queue::Writer::create(spool, queue::Folder::incoming, envelope.queue_id);
        REQUIRE(writer.ok());
        REQUIRE(writer->append(body));
        envelope.message_size = body.size();
        REQUIRE(writer->commit(envelope));
        Message m;
        m.queue_id = envelope.queue_id;
        m.queue_file = spool.file_path(queue::Folder::incoming, envelope.queue_id);
        m.envelope = envelope;
        for (size_t i = 0; i < m.envelope.recipients.size(); ++i) m.recipients.push_back(i);
        return m;
    }

    Server server(uint16_t port) { return Server{"mx.b.test", "127.0.0.1", port}; }

    struct Run {
        std::optional<SetupFailure> failure;
        bool setup_called = false;
        std::vector<MessageOutcome> outcomes;
        bool lost = false;
        bool tls = false;
    };

    // Connects, sends each message in turn on the same connection, quits.
    Run run(uint16_t port, std::vector<Message> messages, bool wait_for_lost = false) {
        Run result;
        std::shared_ptr<SmtpClient> client;
        std::function<void(size_t)> next = [&](size_t index) {
            if (index >= messages.size() || !client->ready()) {
                if (wait_for_lost && client->ready()) {
                    client->on_lost([&] {
                        result.lost = true;
                        loop.stop();
                    });
                    return;
                }
                client->quit();
                loop.stop();
                return;
            }
            client->send(messages[index], [&, index](MessageOutcome outcome) {
                result.outcomes.push_back(std::move(outcome));
                next(index + 1);
            });
        };
        client = SmtpClient::connect(loop, settings, server(port), [&](std::optional<SetupFailure> failure) {
            result.setup_called = true;
            result.failure = std::move(failure);
            result.tls = client->tls_active();
            if (result.failure) {
                loop.stop();
                return;
            }
            next(0);
        });
        REQUIRE(test::run_until_stopped(loop, std::chrono::seconds(20)));
        // Let the QUIT go out.
        event::Timer settle(loop, [&] { loop.stop(); });
        settle.start(std::chrono::milliseconds(50));
        loop.run();
        client.reset();
        return result;
    }
};

queue::Recipient rcpt(std::string address, unsigned notify = queue::notify_default, std::string orcpt = {}) {
    queue::Recipient r;
    r.address = std::move(address);
    r.notify = notify;
    r.orcpt = std::move(orcpt);
    return r;
}

void check_server(FakeServer& server) {
    server.join();
    for (const std::string& error : server.errors) FAIL_CHECK(error);
}

// Self-signed certificate and key made by the openssl CLI.
void make_certificate(const std::string& cert, const std::string& key, const std::string& name) {
    std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=" + name +
                          " -addext subjectAltName=DNS:" + name + " -days 1 -keyout '" + key + "' -out '" + cert +
                          "' </dev/null >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

// ---------------------------------------------------------------------------
// Pure helpers.

TEST_CASE("reply parser assembles multi-line replies and finds enhanced codes") {
    ReplyParser parser;
    CHECK(parser.add("250-mx.b.test\r\n") == ReplyParser::State::more);
    CHECK(parser.add("250-PIPELINING\r\n") == ReplyParser::State::more);
    CHECK(parser.add("250 SIZE 100\r\n") == ReplyParser::State::done);
    Reply reply = parser.take();
    CHECK(reply.code == 250);
    CHECK(reply.lines.size() == 3);
    CHECK(reply.texts()[2] == "SIZE 100");
    CHECK(reply.joined() == "250-mx.b.test 250-PIPELINING 250 SIZE 100");
    CHECK(reply.dsn() == "2.0.0");

    CHECK(parser.add("550 5.1.1 <x@b.test>: no such user\r\n") == ReplyParser::State::done);
    reply = parser.take();
    CHECK(reply.enhanced == "5.1.1");
    CHECK(reply.kind() == 5);

    // A code of another class than the reply is not taken (RFC 3463 §3.1).
    CHECK(parser.add("451 5.1.1 odd\r\n") == ReplyParser::State::done);
    CHECK(parser.take().dsn() == "4.0.0");
    // A bare code, and a bare LF, are accepted.
    CHECK(parser.add("250\n") == ReplyParser::State::done);
    CHECK(parser.take().code == 250);
}

TEST_CASE("reply parser refuses malformed and endless replies") {
    auto bad = GENERATE(as<std::string>{}, "", "25", "abc hello", "250x", "650 nope", "2a0 x");
    ReplyParser parser;
    CHECK(parser.add(bad + "\r\n") == ReplyParser::State::error);
    CHECK_FALSE(parser.error().empty());

    ReplyParser mixed;
    CHECK(mixed.add("250-one\r\n") == ReplyParser::State::more);
    CHECK(mixed.add("251 two\r\n") == ReplyParser::State::error);

    ReplyParser endless;
    ReplyParser::State state = ReplyParser::State::more;
    for (size_t i = 0; i <= kMaxReplyLines && state == ReplyParser::State::more; ++i) state = endless.add("250-x\r\n");
    CHECK(state == ReplyParser::State::error);
}

TEST_CASE("enhanced code recognition") {
    CHECK(leading_enhanced_code("5.1.1 no such user") == "5.1.1");
    CHECK(leading_enhanced_code("2.0.0") == "2.0.0");
    CHECK(leading_enhanced_code("4.123.456 x") == "4.123.456");
    CHECK(leading_enhanced_code("3.1.1 x").empty());
    CHECK(leading_enhanced_code("5.1 x").empty());
    CHECK(leading_enhanced_code("5.1.1x").empty());
    CHECK(leading_enhanced_code("5.1234.1 x").empty());
    CHECK(with_class("5.7.8", '4') == "4.7.8");
}

TEST_CASE("EHLO keywords") {
    ReplyParser parser;
    for (const char* line : {"250-mx.b.test greets you", "250-pipelining", "250-SIZE 52428800", "250-8BITMIME",
                             "250-AUTH PLAIN login", "250-AUTH=CRAM-MD5 LOGIN", "250-STARTTLS", "250-DSN",
                             "250-ENHANCEDSTATUSCODES", "250-CHUNKING", "250-X-UNKNOWN", "250 SMTPUTF8"})
        parser.add(std::string(line) + "\r\n");
    Capabilities c = parse_ehlo(parser.take());
    CHECK(c.pipelining);
    CHECK(c.size);
    CHECK(c.size_limit == 52428800);
    CHECK(c.eightbitmime);
    CHECK(c.starttls);
    CHECK(c.dsn);
    CHECK(c.enhancedstatuscodes);
    CHECK(c.chunking);
    CHECK(c.smtputf8);
    CHECK(c.auth == std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5"});
    CHECK(c.has_auth("plain"));

    ReplyParser junk;
    junk.add("250-mx\r\n");
    junk.add("250 SIZE lots\r\n");
    Capabilities j = parse_ehlo(junk.take());
    CHECK(j.size);
    CHECK(j.size_limit == 0);
    CHECK_FALSE(j.pipelining);
}

TEST_CASE("xtext, NOTIFY and command parameters") {
    CHECK(xtext_encode("a+b=c d\xc3\xa9") == "a+2Bb+3Dc+20d+C3+A9");
    CHECK(xtext_encode("plain@x.test") == "plain@x.test");
    CHECK(notify_value(queue::notify_default).empty());
    CHECK(notify_value(queue::notify_never) == "NEVER");
    CHECK(notify_value(queue::notify_delay | queue::notify_success | queue::notify_failure) == "SUCCESS,FAILURE,DELAY");

    queue::Envelope envelope;
    envelope.sender = "alice@a.test";
    envelope.envid = "id+1";
    envelope.ret = queue::Ret::headers;
    envelope.smtputf8 = true;
    Capabilities none;
    CHECK(mail_command(envelope, none, 123, true) == "MAIL FROM:<alice@a.test>\r\n");
    Capabilities all;
    all.size = all.eightbitmime = all.smtputf8 = all.dsn = true;
    CHECK(mail_command(envelope, all, 123, true) ==
          "MAIL FROM:<alice@a.test> SIZE=123 BODY=8BITMIME SMTPUTF8 RET=HDRS "
          "ENVID=id+2B1\r\n");
    envelope.sender.clear();
    CHECK(mail_command(envelope, all, 5, false) == "MAIL FROM:<> SIZE=5 SMTPUTF8 RET=HDRS ENVID=id+2B1\r\n");

    queue::Recipient r = rcpt("bob@b.test", queue::notify_failure | queue::notify_delay, "rfc822;bob+x@b.test");
    CHECK(rcpt_command(r, none) == "RCPT TO:<bob@b.test>\r\n");
    CHECK(rcpt_command(r, all) ==
          "RCPT TO:<bob@b.test> NOTIFY=FAILURE,DELAY "
          "ORCPT=rfc822;bob+2Bx@b.test\r\n");
}

TEST_CASE("dot-stuffing across arbitrary pieces") {
    const std::string message = ".first\r\nsecond\r\n..third\r\n.\r\nend\r\n";
    const std::string stuffed = "..first\r\nsecond\r\n...third\r\n..\r\nend\r\n.\r\n";
    for (size_t piece : {size_t(1), size_t(2), size_t(3), size_t(7), message.size()}) {
        DotStuffer stuffer;
        std::string out;
        for (size_t at = 0; at < message.size(); at += piece) stuffer.add(message.substr(at, piece), out);
        out += stuffer.finish();
        CHECK(out == stuffed);
    }
    DotStuffer unterminated;
    std::string out;
    unterminated.add("no final line break", out);
    CHECK(out + unterminated.finish() == "no final line break\r\n.\r\n");
    DotStuffer empty;
    CHECK(empty.finish() == ".\r\n");
}

TEST_CASE("queue::Reader::read_range reads any slice of the message") {
    TempDir dir;
    queue::Spool spool(dir.path);
    REQUIRE(spool.create_folders());
    std::string body;
    for (int i = 0; body.size() < queue::kMaxChunk + 5000; ++i) body += fmt::format("line {}\r\n", i);
    queue::Envelope envelope;
    envelope.queue_id = queue::new_queue_id();
    envelope.recipients.push_back(rcpt("bob@b.test"));
    auto writer = queue::Writer::create(spool, queue::Folder::incoming, envelope.queue_id);
    REQUIRE(writer.ok());
    REQUIRE(writer->append(body));
    REQUIRE(writer->commit(envelope));
    auto reader = queue::Reader::open(spool.file_path(queue::Folder::incoming, envelope.queue_id));
    REQUIRE(reader.ok());
    std::string rebuilt;
    for (;;) {
        auto piece = reader->read_range(rebuilt.size(), 65536 + 7);
        REQUIRE(piece.ok());
        if (piece->empty()) break;
        rebuilt += *piece;
    }
    CHECK(rebuilt == body);
    auto across = reader->read_range(queue::kMaxChunk - 10, 20);  // spans two M records
    REQUIRE(across.ok());
    CHECK(*across == body.substr(queue::kMaxChunk - 10, 20));
    CHECK(reader->read_range(body.size(), 10)->empty());
    CHECK(reader->read_range(body.size() + 100, 10)->empty());
}

// ---------------------------------------------------------------------------
// Against the fake server.

TEST_CASE("pipelined delivery: parameters, xtext ORCPT, dot-stuffing, final dot") {
    Harness h;
    std::string data_seen;
    std::vector<std::string> batch;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        batch.push_back(s.line());  // MAIL
        batch.push_back(s.line());  // RCPT
        batch.push_back(s.line());  // RCPT
        batch.push_back(s.line());  // DATA: all before any reply
        s.send("250 2.1.0 ok");
        s.send("250 2.1.5 ok");
        s.send("250 2.1.5 ok");
        s.send("354 go ahead");
        data_seen = s.data();
        s.send("250 2.0.0 Ok: queued as 4ABC");
        quit_if_asked(s);
    });
    auto message =
        h.message(".hidden\r\nSubject: x\r\n\r\n..two\r\nbody\r\n",
                  {rcpt("bob@b.test", queue::notify_success | queue::notify_failure, "rfc822;bob+tag@b.test"),
                   rcpt("carol@b.test", queue::notify_never)});
    message.envelope.envid = "env=1";
    message.envelope.ret = queue::Ret::full;
    message.envelope.body = queue::BodyType::eight_bit_mime;
    auto run = h.run(server.port, {message});
    check_server(server);
    REQUIRE_FALSE(run.failure);
    REQUIRE(run.outcomes.size() == 1);
    REQUIRE(batch.size() == 4);
    CHECK(batch[0] == fmt::format("MAIL FROM:<alice@a.test> SIZE={} "
                                  "BODY=8BITMIME RET=FULL ENVID=env+3D1\r\n",
                                  message.envelope.message_size));
    CHECK(batch[1] ==
          "RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE "
          "ORCPT=rfc822;bob+2Btag@b.test\r\n");
    CHECK(batch[2] == "RCPT TO:<carol@b.test> NOTIFY=NEVER\r\n");
    CHECK(batch[3] == "DATA\r\n");
    CHECK(data_seen == "..hidden\r\nSubject: x\r\n\r\n...two\r\nbody\r\n.\r\n");
    const MessageOutcome& outcome = run.outcomes[0];
    CHECK(outcome.reusable);
    REQUIRE(outcome.recipients.size() == 2);
    for (const RecipientOutcome& r : outcome.recipients) {
        CHECK(r.outcome == Outcome::sent);
        CHECK(r.dsn == "2.0.0");
        CHECK(r.remote_dsn);
        CHECK(r.reason == "250 2.0.0 Ok: queued as 4ABC");
    }
    CHECK(server.transcripts.at(0).find("QUIT\r\n") != std::string::npos);
}

TEST_CASE("without PIPELINING the client waits for each reply") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s, "250 8BITMIME");
        s.expect("MAIL FROM:<alice@a.test>\r\n");
        if (s.more_within(200)) s.errors.push_back("client did not wait for the MAIL reply");
        s.send("250 ok");
        s.expect("RCPT TO:<bob@b.test>\r\n");
        if (s.more_within(200)) s.errors.push_back("client did not wait for the RCPT reply");
        s.send("250 ok");
        s.expect("RCPT TO:<carol@b.test>\r\n");
        if (s.more_within(200)) s.errors.push_back("client did not wait for the second RCPT reply");
        s.send("250 ok");
        s.expect("DATA\r\n");
        s.send("354 go");
        std::string data = s.data();
        if (data != "hello\r\n.\r\n") s.errors.push_back("bad data [" + data + "]");
        s.send("250 queued");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {h.message("hello\r\n", {rcpt("bob@b.test"), rcpt("carol@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::sent);
    CHECK(run.outcomes[0].recipients[0].remote_dsn == false);  // no DSN announced
}

TEST_CASE("EHLO answered 502 falls back to HELO") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        s.send("220 old.b.test SMTP");
        s.expect("EHLO relay.a.test");
        s.send("502 5.5.2 what?");
        s.expect("HELO relay.a.test\r\n");
        s.send("250 old.b.test");
        // No extensions: plain MAIL without parameters even for an 8-bit
        // declared body with only ASCII content.
        s.expect("MAIL FROM:<alice@a.test>\r\n");
        s.send("250 ok");
        s.expect("RCPT TO:<bob@b.test>\r\n");
        s.send("250 ok");
        s.expect("DATA");
        s.send("354 go");
        s.data();
        s.send("250 done");
        quit_if_asked(s);
    });
    auto message = h.message("plain\r\n", {rcpt("bob@b.test", queue::notify_success, "rfc822;bob@b.test")});
    message.envelope.body = queue::BodyType::eight_bit_mime;
    auto run = h.run(server.port, {message});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::sent);
    CHECK(run.outcomes[0].recipients[0].dsn == "2.0.0");
}

TEST_CASE("mixed RCPT replies: sent, deferred, bounced with reasons and codes") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 5; ++i) s.line();
        s.send("250 2.1.0 ok");
        s.send("250 2.1.5 ok");
        s.send("450 4.2.1 mailbox busy");
        s.send("550-5.1.1 <x@b.test>: no such user\r\n550 5.1.1 really");
        s.send("354 go");
        s.data();
        s.send("250 2.0.0 queued");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {h.message("hi\r\n", {rcpt("bob@b.test"), rcpt("busy@b.test"), rcpt("x@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    const auto& r = run.outcomes[0].recipients;
    CHECK(r[0].outcome == Outcome::sent);
    CHECK(r[0].remote_dsn);
    CHECK(r[1].outcome == Outcome::deferred);
    CHECK(r[1].dsn == "4.2.1");
    CHECK(r[1].reason ==
          "host mx.b.test[127.0.0.1] said: 450 4.2.1 mailbox busy "
          "(in reply to RCPT TO command)");
    CHECK_FALSE(r[1].remote_dsn);
    CHECK(r[2].outcome == Outcome::bounced);
    CHECK(r[2].dsn == "5.1.1");
    CHECK(r[2].reason ==
          "host mx.b.test[127.0.0.1] said: 550-5.1.1 <x@b.test>: "
          "no such user 550 5.1.1 really "
          "(in reply to RCPT TO command)");
    CHECK(run.outcomes[0].reusable);
}

TEST_CASE(
    "every RCPT refused: no message data; the connection is reused after "
    "RSET") {
    Harness h;
    bool rset_seen = false;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 3; ++i) s.line();  // MAIL, RCPT, DATA
        s.send("250 ok");
        s.send("550 no");  // no enhanced code: derived 5.0.0
        s.send("554 5.5.1 no valid recipients");
        // Next message: RSET first.
        rset_seen = s.line() == "RSET\r\n";
        s.send("250 2.0.0 reset");
        for (int i = 0; i < 3; ++i) s.line();
        s.send("250 ok");
        s.send("250 ok");
        s.send("354 go");
        s.data();
        s.send("250 2.0.0 ok");
        quit_if_asked(s);
    });
    auto first = h.message("one\r\n", {rcpt("nobody@b.test")});
    auto second = h.message("two\r\n", {rcpt("bob@b.test")});
    auto run = h.run(server.port, {first, second});
    check_server(server);
    CHECK(rset_seen);
    REQUIRE(run.outcomes.size() == 2);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::bounced);
    CHECK(run.outcomes[0].recipients[0].dsn == "5.0.0");
    CHECK(run.outcomes[0].reusable);
    CHECK(run.outcomes[1].recipients[0].outcome == Outcome::sent);
    // No message data went out for the first message.
    CHECK(server.transcripts.at(0).find("one\r\n") == std::string::npos);
}

TEST_CASE("452 after the dot defers every accepted recipient") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 4; ++i) s.line();
        s.send("250 ok");
        s.send("250 ok");
        s.send("250 ok");
        s.send("354 go");
        s.data();
        s.send("452 4.3.1 insufficient system storage");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {h.message("x\r\n", {rcpt("a@b.test"), rcpt("b@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    for (const auto& r : run.outcomes[0].recipients) {
        CHECK(r.outcome == Outcome::deferred);
        CHECK(r.dsn == "4.3.1");
        CHECK(r.reason ==
              "host mx.b.test[127.0.0.1] said: 452 4.3.1 insufficient "
              "system storage (in reply to end "
              "of DATA command)");
    }
    CHECK(run.outcomes[0].reusable);
}

TEST_CASE("two messages on one connection") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int m = 0; m < 2; ++m) {
            s.expect("MAIL FROM:<alice@a.test>");
            s.expect("RCPT TO:");
            s.expect("DATA");
            s.send("250 ok\r\n250 ok\r\n354 go");
            s.data();
            s.send(fmt::format("250 2.0.0 queued as {}", m));
        }
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {h.message("1\r\n", {rcpt("a@b.test")}), h.message("2\r\n", {rcpt("b@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 2);
    CHECK(run.outcomes[0].recipients[0].reason == "250 2.0.0 queued as 0");
    CHECK(run.outcomes[1].recipients[0].reason == "250 2.0.0 queued as 1");
}

TEST_CASE(
    "local refusals: SIZE over the limit, SMTPUTF8 for a UTF-8 recipient "
    "only") {
    Harness h;
    std::vector<std::string> rcpts;
    FakeServer server([&](FakeSession& s) {
        greet(s, "250-PIPELINING\r\n250 SIZE 100");
        // Message 1 is too big: nothing is sent for it. Message 2: only the
        // ASCII recipient goes.
        s.expect("MAIL FROM:<alice@a.test> SIZE=5\r\n");
        rcpts.push_back(s.line());
        s.expect("DATA");
        s.send("250 ok\r\n250 ok\r\n354 go");
        s.data();
        s.send("250 ok");
        quit_if_asked(s);
    });
    auto big = h.message(std::string(200, 'x') + "\r\n", {rcpt("a@b.test")});
    auto utf8 = h.message("hey\r\n", {rcpt("j\xc3\xb6rg@b.test"), rcpt("ascii@b.test")});
    utf8.envelope.smtputf8 = true;
    auto run = h.run(server.port, {big, utf8});
    check_server(server);
    REQUIRE(run.outcomes.size() == 2);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::bounced);
    CHECK(run.outcomes[0].recipients[0].dsn == "5.3.4");
    CHECK(run.outcomes[0].recipients[0].reason ==
          "message too big for host mx.b.test[127.0.0.1] (202 bytes, limit 100)");
    CHECK(run.outcomes[0].reusable);
    CHECK(run.outcomes[1].recipients[0].outcome == Outcome::bounced);
    CHECK(run.outcomes[1].recipients[0].dsn == "5.6.7");
    CHECK(run.outcomes[1].recipients[0].reason ==
          "SMTPUTF8 is required, but was not offered by host mx.b.test[127.0.0.1]");
    CHECK(run.outcomes[1].recipients[1].outcome == Outcome::sent);
    REQUIRE(rcpts.size() == 1);
    CHECK(rcpts[0] == "RCPT TO:<ascii@b.test>\r\n");
}

TEST_CASE(
    "a UTF-8 sender without SMTPUTF8 bounces every recipient without a "
    "transaction") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s, "250 PIPELINING");
        quit_if_asked(s);
    });
    auto message = h.message("x\r\n", {rcpt("a@b.test"), rcpt("b@b.test")}, "\xc3\xa9@a.test");
    message.envelope.smtputf8 = true;
    auto run = h.run(server.port, {message});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    for (const auto& r : run.outcomes[0].recipients) CHECK(r.dsn == "5.6.7");
    CHECK(server.transcripts.at(0).find("MAIL") == std::string::npos);
}

TEST_CASE(
    "8BITMIME downgrade: a server without 8BITMIME gets 7-bit "
    "quoted-printable") {
    Harness h;
    std::string data;
    std::string mail;
    FakeServer server([&](FakeSession& s) {
        greet(s, "250 PIPELINING");
        mail = s.line();
        s.line();
        s.line();
        s.send("250 ok\r\n250 ok\r\n354 go");
        data = s.data();
        s.send("250 ok");
        quit_if_asked(s);
    });
    auto message = h.message(
        "From: a@a.test\r\nMIME-Version: 1.0\r\nContent-Type: "
        "text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9f"
        "e\r\n.dot\r\n",
        {rcpt("a@b.test")});
    message.envelope.body = queue::BodyType::eight_bit_mime;
    auto run = h.run(server.port, {message});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::sent);
    CHECK(mail.find("BODY=") == std::string::npos);
    for (char c : data) CHECK(static_cast<unsigned char>(c) < 0x80);
    CHECK(data.find("quoted-printable") != std::string::npos);
    CHECK(data.find("Gr=C3=BC=C3=9Fe") != std::string::npos);
}

TEST_CASE("greeting 554 is a bounced SetupFailure; 4xx a deferred one") {
    auto [code, outcome] = GENERATE(std::make_pair(std::string("554 5.7.1 go away"), Outcome::bounced),
                                    std::make_pair(std::string("450 4.3.2 busy"), Outcome::deferred));
    Harness h;
    FakeServer server([&, code = code](FakeSession& s) {
        s.send(code);
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == outcome);
    CHECK(run.failure->dsn == code.substr(4, 5));
    CHECK(run.failure->reason == "host mx.b.test[127.0.0.1] refused to talk to me: " + code);
}

TEST_CASE("a server that never greets times out") {
    Harness h;
    h.settings.timeouts.greeting = std::chrono::milliseconds(200);
    FakeServer server([&](FakeSession& s) { s.line(); });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == Outcome::deferred);
    CHECK(run.failure->dsn == "4.4.2");
    CHECK(run.failure->reason ==
          "conversation with mx.b.test[127.0.0.1] timed out while receiving the "
          "initial server greeting");
}

TEST_CASE("connection refused") {
    Harness h;
    // A port nobody listens on: bind one, close it.
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    uint16_t port = ntohs(address.sin_port);
    ::close(fd);
    auto run = h.run(port, {});
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == Outcome::deferred);
    CHECK(run.failure->dsn == "4.4.1");
    CHECK(run.failure->reason == fmt::format("connect to mx.b.test[127.0.0.1]:{}: Connection refused", port));
}

TEST_CASE("server closing mid-DATA: deferred, not reusable") {
    Harness h;
    // The client may learn of the close by an error on its next write or,
    // when the server's window was full, only by its zero-window probes
    // (backing off): then the per-block deadline ends it. Either way the
    // recipients are deferred and the connection is dropped.
    h.settings.timeouts.data_block = std::chrono::milliseconds(1000);
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 3; ++i) s.line();
        s.send("250 ok\r\n250 ok\r\n354 go");
        s.line();
        s.close();
    });
    std::string body;
    while (body.size() < 3 * 1024 * 1024) body += std::string(70, 'y') + "\r\n";
    auto run = h.run(server.port, {h.message(body, {rcpt("a@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK_FALSE(run.outcomes[0].reusable);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::deferred);
    CHECK(run.outcomes[0].recipients[0].dsn == "4.4.2");
    CHECK_THAT(run.outcomes[0].recipients[0].reason,
               Catch::Contains("mx.b.test[127.0.0.1]") && Catch::EndsWith("while sending message body"));
}

TEST_CASE("server closing after the dot without a reply") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 3; ++i) s.line();
        s.send("250 ok\r\n250 ok\r\n354 go");
        s.data();
        s.close();
    });
    auto run = h.run(server.port, {h.message("short\r\n", {rcpt("a@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK_FALSE(run.outcomes[0].reusable);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::deferred);
    CHECK(run.outcomes[0].recipients[0].reason ==
          "lost connection with mx.b.test[127.0.0.1] while sending end of data "
          "-- message may be sent more than "
          "once");
}

TEST_CASE("421 during RCPT defers the rest and ends the connection") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 4; ++i) s.line();
        s.send("250 ok\r\n250 ok\r\n421 4.3.2 shutting down");
        s.close();
    });
    auto run = h.run(server.port, {h.message("x\r\n", {rcpt("a@b.test"), rcpt("b@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK_FALSE(run.outcomes[0].reusable);
    for (const auto& r : run.outcomes[0].recipients) {
        CHECK(r.outcome == Outcome::deferred);
        CHECK(r.dsn == "4.3.2");
    }
    CHECK(run.outcomes[0].recipients[1].reason ==
          "host mx.b.test[127.0.0.1] said: 421 4.3.2 shutting down (in reply to "
          "RCPT TO command)");
}

TEST_CASE("an idle connection closed by the server fires on_lost") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 3; ++i) s.line();
        s.send("250 ok\r\n250 ok\r\n354 go");
        s.data();
        s.send("250 ok");
        usleep(100 * 1000);
        s.send("421 4.4.2 idle too long");
        s.close();
    });
    auto run = h.run(server.port, {h.message("x\r\n", {rcpt("a@b.test")})}, true);
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.lost);
}

TEST_CASE("a 100 KB message is streamed intact") {
    Harness h;
    std::string data;
    FakeServer server([&](FakeSession& s) {
        greet(s);
        for (int i = 0; i < 3; ++i) s.line();
        s.send("250 ok\r\n250 ok\r\n354 go");
        data = s.data();
        s.send("250 ok");
        quit_if_asked(s);
    });
    std::string body;
    for (int i = 0; body.size() < 100 * 1024; ++i)
        body += fmt::format("{}line {:06} of the message\r\n", i % 7 == 0 ? "." : "", i);
    auto run = h.run(server.port, {h.message(body, {rcpt("a@b.test")})});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::sent);
    // Undo the stuffing and compare.
    std::string unstuffed;
    size_t at = 0;
    while (at < data.size()) {
        size_t end = data.find("\r\n", at);
        std::string line = data.substr(at, end + 2 - at);
        at = end + 2;
        if (line == ".\r\n") break;
        if (line[0] == '.') line.erase(0, 1);
        unstuffed += line;
    }
    CHECK(unstuffed.size() == body.size());
    CHECK(unstuffed == body);
}

// ---------------------------------------------------------------------------
// STARTTLS and AUTH.

struct TlsFixture {
    TempDir dir;
    std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
    std::optional<tls::Context> server_ctx, opportunistic, verified;
    TlsFixture(const std::string& name, const std::string& ca_file) {
        make_certificate(cert, key, name);
        auto s = tls::Context::server(cert, key);
        REQUIRE(s.ok());
        server_ctx.emplace(std::move(*s));
        auto o = tls::Context::client({.verify_peer = false, .ca_file = {}});
        REQUIRE(o.ok());
        opportunistic.emplace(std::move(*o));
        auto v = tls::Context::client({.verify_peer = true, .ca_file = ca_file.empty() ? cert : ca_file});
        REQUIRE(v.ok());
        verified.emplace(std::move(*v));
    }
    void apply(ClientSettings& settings, TlsLevel level) {
        settings.tls = level;
        settings.tls_opportunistic = opportunistic->get();
        settings.tls_verified = verified->get();
    }
};

void tls_greet(FakeSession& s, SSL_CTX* ctx, const std::string& after_tls) {
    greet(s, "250-PIPELINING\r\n250 STARTTLS");
    s.expect("STARTTLS\r\n");
    s.send("220 2.0.0 ready");
    if (!s.tls_accept(ctx)) {
        s.errors.push_back("server handshake failed");
        return;
    }
    s.expect("EHLO relay.a.test");
    s.send("250-mx.b.test\r\n" + after_tls);
}

TEST_CASE("STARTTLS may: encrypted, then EHLO again, then the message") {
    TlsFixture tls("mx.b.test", "");
    Harness h;
    tls.apply(h.settings, TlsLevel::may);
    FakeServer server([&](FakeSession& s) {
        tls_greet(s, tls.server_ctx->get(), "250 PIPELINING");
        for (int i = 0; i < 3; ++i) s.line();
        s.send("250 ok\r\n250 ok\r\n354 go");
        s.data();
        s.send("250 2.0.0 ok");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {h.message("secret\r\n", {rcpt("a@b.test")})});
    check_server(server);
    REQUIRE_FALSE(run.failure);
    CHECK(run.tls);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::sent);
}

TEST_CASE("STARTTLS encrypt when not offered: SetupFailure 4.7.4") {
    TlsFixture tls("mx.b.test", "");
    Harness h;
    tls.apply(h.settings, TlsLevel::encrypt);
    FakeServer server([&](FakeSession& s) {
        greet(s, "250 PIPELINING");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == Outcome::deferred);
    CHECK(run.failure->dsn == "4.7.4");
    CHECK(run.failure->reason == "TLS is required, but was not offered by host mx.b.test[127.0.0.1]");
}

TEST_CASE("STARTTLS verify against an untrusted self-signed certificate: 4.7.5") {
    TlsFixture tls("mx.b.test", "");
    TlsFixture other("other.test", "");  // the client trusts only this one
    Harness h;
    h.settings.tls = TlsLevel::verify;
    h.settings.tls_verified = other.verified->get();
    FakeServer server([&](FakeSession& s) {
        greet(s, "250-PIPELINING\r\n250 STARTTLS");
        s.expect("STARTTLS\r\n");
        s.send("220 2.0.0 ready");
        s.tls_accept(tls.server_ctx->get());
    });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == Outcome::deferred);
    CHECK(run.failure->dsn == "4.7.5");
    CHECK_THAT(run.failure->reason, Catch::Contains("certificate verification failed"));
    CHECK_THAT(run.failure->reason, Catch::Contains("self-signed certificate"));
    CHECK_FALSE(run.tls);
}

TEST_CASE("STARTTLS verify succeeds with the CA file and a matching name") {
    TlsFixture tls("mx.b.test", "");
    Harness h;
    tls.apply(h.settings, TlsLevel::verify);
    FakeServer server([&](FakeSession& s) {
        tls_greet(s, tls.server_ctx->get(), "250 PIPELINING");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE_FALSE(run.failure);
    CHECK(run.tls);
}

TEST_CASE("AUTH PLAIN after STARTTLS; 535 defers with 4.7.8") {
    TlsFixture tls("mx.b.test", "");
    Harness h;
    tls.apply(h.settings, TlsLevel::may);
    h.settings.credentials = Credentials{"relayuser", "s3cret"};
    std::string auth_line;
    const bool accept = GENERATE(true, false);
    FakeServer server([&](FakeSession& s) {
        tls_greet(s, tls.server_ctx->get(), "250-PIPELINING\r\n250 AUTH LOGIN PLAIN");
        auth_line = s.line();
        s.send(accept ? "235 2.7.0 ok" : "535 5.7.8 bad credentials");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {});
    check_server(server);
    CHECK(auth_line == "AUTH PLAIN " + base64::encode(std::string("\0relayuser\0s3cret", 17)) + "\r\n");
    if (accept) {
        CHECK_FALSE(run.failure);
    } else {
        REQUIRE(run.failure);
        CHECK(run.failure->outcome == Outcome::deferred);
        CHECK(run.failure->dsn == "4.7.8");
        CHECK_THAT(run.failure->reason, Catch::Contains("535 5.7.8 bad credentials"));
    }
}

TEST_CASE("AUTH LOGIN when PLAIN is not offered (loopback: clear text allowed)") {
    Harness h;
    h.settings.credentials = Credentials{"u", "p"};
    std::vector<std::string> lines;
    FakeServer server([&](FakeSession& s) {
        greet(s, "250 AUTH LOGIN");
        lines.push_back(s.line());
        s.send("334 VXNlcm5hbWU6");
        lines.push_back(s.line());
        s.send("334 UGFzc3dvcmQ6");
        lines.push_back(s.line());
        s.send("235 ok");
        quit_if_asked(s);
    });
    auto run = h.run(server.port, {});
    check_server(server);
    CHECK_FALSE(run.failure);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "AUTH LOGIN\r\n");
    CHECK(lines[1] == base64::encode("u") + "\r\n");
    CHECK(lines[2] == base64::encode("p") + "\r\n");
}

TEST_CASE("STARTTLS may: a failed handshake is a SetupFailure 4.7.5") {
    TlsFixture tls("mx.b.test", "");
    Harness h;
    tls.apply(h.settings, TlsLevel::may);
    FakeServer server([&](FakeSession& s) {
        greet(s, "250-PIPELINING\r\n250 STARTTLS");
        s.expect("STARTTLS\r\n");
        s.send("220 2.0.0 ready");
        s.send("this is not TLS at all, just text that breaks the handshake");
        s.line();
    });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == Outcome::deferred);
    CHECK(run.failure->dsn == "4.7.5");
    CHECK_THAT(run.failure->reason, Catch::StartsWith("TLS handshake failed with host mx.b.test[127.0.0.1]: "));
}

TEST_CASE(
    "8-bit message that cannot be converted bounces 5.6.3 without a "
    "transaction") {
    Harness h;
    FakeServer server([&](FakeSession& s) {
        greet(s, "250 PIPELINING");
        quit_if_asked(s);
    });
    // 8-bit bytes in a header field: no safe 7-bit form (RFC 6152 §3).
    auto message = h.message(
        "Subject: Gr\xc3\xbc\xc3\x9f"
        "e\r\n\r\nbody\r\n",
        {rcpt("a@b.test")});
    message.envelope.body = queue::BodyType::eight_bit_mime;
    auto run = h.run(server.port, {message});
    check_server(server);
    REQUIRE(run.outcomes.size() == 1);
    CHECK(run.outcomes[0].recipients[0].outcome == Outcome::bounced);
    CHECK(run.outcomes[0].recipients[0].dsn == "5.6.3");
    CHECK_THAT(run.outcomes[0].recipients[0].reason,
               Catch::StartsWith("host mx.b.test[127.0.0.1] does not support 8BITMIME"));
    CHECK(run.outcomes[0].reusable);
    CHECK(server.transcripts.at(0).find("MAIL") == std::string::npos);
}

TEST_CASE("EHLO answered 4xx or 421 is a deferred SetupFailure quoting the reply") {
    const std::string code = GENERATE(as<std::string>{}, "421 4.3.2 closing", "451 4.3.0 later");
    Harness h;
    FakeServer server([&](FakeSession& s) {
        s.send("220 mx.b.test");
        s.expect("EHLO");
        s.send(code);
        s.line();  // QUIT, or nothing after 421
    });
    auto run = h.run(server.port, {});
    check_server(server);
    REQUIRE(run.failure);
    CHECK(run.failure->outcome == Outcome::deferred);
    CHECK(run.failure->dsn == code.substr(4, 5));
    CHECK(run.failure->reason == "host mx.b.test[127.0.0.1] said: " + code + " (in reply to EHLO command)");
}
