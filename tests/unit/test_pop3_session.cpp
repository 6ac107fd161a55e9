// Unit tests for the pop3d session state machine: a real Session on a real
// event loop, a real Maildir (and mbox) in a temporary directory, and a fake
// authd speaking the auth_lookup protocol on a Unix socket. The client is a
// thread writing raw POP3 (pipelined when the test says so) and, for STLS,
// a blocking OpenSSL client.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libmail/auth_lookup.hpp"
#include "libmail/base64.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/log.hpp"
#include "libmail/mailbox.hpp"
#include "libmail/maildir.hpp"
#include "libmail/mbox.hpp"
#include "libmail/password.hpp"
#include "libmail/tls.hpp"
#include "pop3d/session.hpp"
#include "test_support.hpp"

using namespace facteur;
using namespace facteur::pop3d;

namespace {

constexpr std::string_view kApopSecret = "tanstaaf";

const std::string kMessage1 = "From: a@example.test\nSubject: one\n\nHello\n.dot line\n";
const std::string kMessage2 = "Subject: two\r\n\r\nbody2\r\n";
const std::string kMessage3 = "Subject: three\n\nl1\nl2\nl3\n";

// authd's lookup socket as pop3d sees it: alice (Maildir, APOP secret) and
// bob (mbox) with password "secret"; "down" makes authd fail temporarily.
ipc::Frame fake_authd(const ipc::Frame& request, const std::string& mail_root) {
    auto op = auth_lookup::serve::op(request);
    if (!op) return auth_lookup::serve::error_reply(op.error());
    auto canonical = [](std::string user) {
        if (user.find('@') == std::string::npos) user += "@example.test";
        return user;
    };
    auth_lookup::VerifyReply reply;
    switch (*op) {
        case auth_lookup::Op::verify: {
            auto verify = auth_lookup::serve::verify(request);
            if (!verify) return auth_lookup::serve::error_reply(verify.error());
            if (verify->service != "pop3") return auth_lookup::serve::error_reply("wrong service");
            std::string user = canonical(verify->user);
            if (user == "down@example.test") return auth_lookup::serve::tempfail_reply("database locked");
            bool known = user == "alice@example.test" || user == "bob@example.test";
            reply.user = user;
            reply.result = known && verify->password == "secret" ? auth_lookup::Outcome::ok : auth_lookup::Outcome::fail;
            return auth_lookup::serve::verify_reply(reply);
        }
        case auth_lookup::Op::apop: {
            auto apop = auth_lookup::serve::apop(request);
            if (!apop) return auth_lookup::serve::error_reply(apop.error());
            std::string user = canonical(apop->user);
            reply.user = user;
            reply.result = user == "alice@example.test" && auth::verify_apop(apop->timestamp, kApopSecret, apop->digest)
                               ? auth_lookup::Outcome::ok
                               : auth_lookup::Outcome::fail;
            return auth_lookup::serve::verify_reply(reply);
        }
        case auth_lookup::Op::user: {
            auto user = auth_lookup::serve::user(request);
            if (!user) return auth_lookup::serve::error_reply(user.error());
            std::optional<auth_lookup::UserInfo> info;
            if (*user == "alice@example.test" || *user == "bob@example.test") {
                info.emplace();
                info->address = *user;
                std::string local = user->substr(0, user->find('@'));
                info->mail_path = mail_root + "/example.test/" + local;
                info->format = local == "alice" ? "maildir" : "mbox";
            }
            return auth_lookup::serve::user_reply(info);
        }
        case auth_lookup::Op::resolve:
            break;
    }
    return auth_lookup::serve::error_reply("unexpected request");
}

struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct SslContextFree {
    void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};

// The client side of one connection, run on its own thread: blocking I/O
// with a receive timeout, plain or TLS after STLS. No Catch2 macros here
// (they are not thread-safe): the test checks `transcript` afterwards.
class Client {
public:
    explicit Client(int fd) : fd_(fd) {
        timeval timeout{5, 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    }

    void send(std::string_view text) {
        size_t written = 0;
        while (written < text.size()) {
            ssize_t n = ssl_ ? SSL_write(ssl_.get(), text.data() + written, static_cast<int>(text.size() - written))
                             : ::write(fd_, text.data() + written, text.size() - written);
            if (n <= 0) return;
            written += static_cast<size_t>(n);
        }
    }

    // Reads until `marker` arrived (or EOF / timeout); returns the text up
    // to and including it and keeps the rest for the next call.
    std::string read_until(std::string_view marker) {
        size_t found;
        while ((found = pending_.find(marker)) == std::string::npos) {
            if (!fill()) {
                std::string all = std::move(pending_);
                pending_.clear();
                return all;
            }
        }
        std::string part = pending_.substr(0, found + marker.size());
        pending_.erase(0, found + marker.size());
        return part;
    }
    std::string read_line() { return read_until("\r\n"); }
    std::string read_to_eof() {
        while (fill()) {
        }
        std::string all = std::move(pending_);
        pending_.clear();
        return all;
    }

    bool start_tls() {
        context_.reset(SSL_CTX_new(TLS_client_method()));
        if (!context_) return false;
        SSL_CTX_set_verify(context_.get(), SSL_VERIFY_NONE, nullptr);
        ssl_.reset(SSL_new(context_.get()));
        if (!ssl_) return false;
        SSL_set_fd(ssl_.get(), fd_);
        return SSL_connect(ssl_.get()) == 1;
    }

    const std::string& received() const { return received_; }

    void close() {
        if (ssl_) SSL_shutdown(ssl_.get());
        ssl_.reset();
        ::shutdown(fd_, SHUT_RDWR);
    }

private:
    bool fill() {
        char buffer[16384];
        ssize_t n = ssl_ ? SSL_read(ssl_.get(), buffer, sizeof buffer) : ::read(fd_, buffer, sizeof buffer);
        if (n <= 0) return false;
        pending_.append(buffer, static_cast<size_t>(n));
        received_.append(buffer, static_cast<size_t>(n));
        return true;
    }

    int fd_;
    std::string pending_;   // received, not yet consumed by read_*
    std::string received_;  // everything received
    std::unique_ptr<SSL_CTX, SslContextFree> context_;
    std::unique_ptr<SSL, SslFree> ssl_;
};

// The greeting's "<...>" timestamp (RFC 1939 §7), empty when there is none.
std::string timestamp_of(const std::string& greeting) {
    size_t start = greeting.find('<');
    size_t end = greeting.find('>', start == std::string::npos ? 0 : start);
    if (start == std::string::npos || end == std::string::npos) return {};
    return greeting.substr(start, end - start + 1);
}

// Self-signed certificate and key made by the openssl CLI.
bool make_certificate(const std::string& cert, const std::string& key) {
    std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 -keyout '" + key +
                          "' -out '" + cert + "' </dev/null >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
}

enum class Transport { socketpair, tcp_loopback };

struct Fixture {
    test::TempDir dir;
    facteur::event::Loop loop;
    facteur::event::WorkerPool pool{loop, 2};
    std::unique_ptr<ipc::Server> authd;
    std::unique_ptr<auth_lookup::Client> auth;
    std::optional<tls::Context> tls;
    Settings settings;
    std::string mail_root = dir.file("mail");
    std::string alice = mail_root + "/example.test/alice";
    std::string bob = mail_root + "/example.test/bob";
    std::vector<std::string> alice_uids;
    // Run on the loop every few milliseconds while a conversation goes on.
    std::function<void(Session&)> on_tick;
    bool finished = false;

    Fixture() {
        log::set_minimum(log::Level::warning);  // keep the test output readable
        auto socket = facteur::event::listen_unix(dir.file("auth-lookup"), 0600);
        REQUIRE(socket.ok());
        std::string root = mail_root;
        authd = std::make_unique<ipc::Server>(
            loop, std::move(socket).value(),
            [root](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                respond(fake_authd(request, root));
            });
        auth = std::make_unique<auth_lookup::Client>(loop, dir.file("auth-lookup"));
        settings.myhostname = "pop.example.test";
        settings.banner = "facteur POP3 ready";
        settings.plaintext_auth = PlaintextAuth::yes;
        settings.apop = true;
        settings.auth_failure_delay = std::chrono::milliseconds(10);
        settings.login_failure_limit = 3;
        settings.error_limit = 10;
        settings.command_line_limit = 512;
    }

    // Alice's Maildir with three messages, oldest first: the times in the
    // names and the files' mtimes both say so.
    void fill_alice() {
        std::string maildir = store::maildir_path(alice);
        REQUIRE(store::create_maildir(maildir).ok());
        const std::string messages[] = {kMessage1, kMessage2, kMessage3};
        for (size_t i = 0; i < 3; ++i) {
            store::UniqueNameParts parts;
            parts.seconds = 1700000000 + static_cast<int64_t>(i) * 10;
            parts.microseconds = 1;
            parts.pid = 4242;
            parts.counter = i;
            parts.host = "test.example";
            std::string base = store::format_unique_name(parts);
            std::string name = store::delivered_name(base, messages[i].size(), store::served_size(messages[i]));
            std::string path = maildir + "/new/" + name;
            std::ofstream(path, std::ios::binary) << messages[i];
            timespec times[2] = {{parts.seconds, 0}, {parts.seconds, 0}};
            REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
            alice_uids.push_back(base);
        }
    }

    void fill_bob() {
        REQUIRE(store::make_directories(bob, 0700).ok());
        for (const std::string& message : {kMessage1, kMessage3}) {
            auto outcome = store::deliver_to_mbox(store::mbox_path(bob), "a@example.test", 1700000000,
                                                  store::source_from_string(message));
            REQUIRE(outcome.ok());
        }
    }

    void enable_tls() {
        std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
        REQUIRE(make_certificate(cert, key));
        auto context = tls::Context::server(cert, key);
        REQUIRE(context.ok());
        tls.emplace(std::move(context).value());
    }

    std::pair<UniqueFd, UniqueFd> connected_pair(Transport transport) {
        if (transport == Transport::socketpair) {
            int pair[2];
            REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
            return {UniqueFd(pair[0]), UniqueFd(pair[1])};
        }
        auto listening = facteur::event::listen_tcp("127.0.0.1", 0);
        REQUIRE(listening.ok());
        auto port = facteur::event::local_port(listening->get());
        REQUIRE(port.ok());
        UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(*port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        int accepted = -1;
        for (int attempt = 0; attempt < 100 && accepted < 0; ++attempt) {
            accepted = ::accept4(listening->get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (accepted < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        REQUIRE(accepted >= 0);
        return {UniqueFd(accepted), std::move(client)};
    }

    // Runs one session against `script` (on the client thread) and returns
    // everything the client received. Returns once the session finished
    // (any \Seen commit included).
    std::string run(const std::function<void(Client&)>& script, Transport transport = Transport::socketpair,
                    PortKind kind = PortKind::pop3) {
        auto [server_end, client_end] = connected_pair(transport);
        SessionServices services{settings, loop, pool, *auth, tls ? &*tls : nullptr};
        auto connection = kind == PortKind::pop3s
                              ? facteur::event::Connection::create_tls_server(loop, std::move(server_end), tls->get())
                              : facteur::event::Connection::create(loop, std::move(server_end));
        auto session = std::make_shared<Session>(services, std::move(connection), kind);
        finished = false;
        session->start([this] { finished = true; });

        std::atomic<bool> done{false};
        std::string transcript;
        int fd = client_end.get();
        std::thread client_thread([&] {
            Client client(fd);
            script(client);
            client.close();
            transcript = client.received();
            done = true;
        });
        facteur::event::Timer watcher(loop, [&] {
            if (on_tick && !finished) on_tick(*session);
            if (done && finished) loop.stop();
        });
        watcher.start_repeating(std::chrono::milliseconds(5));
        CHECK(test::run_until_stopped(loop, std::chrono::seconds(20)));
        client_thread.join();
        session.reset();
        on_tick = nullptr;
        return transcript;
    }

    std::unique_ptr<store::Mailbox> open_alice() {
        auto mailbox = store::open_inbox(alice, store::Format::maildir);
        REQUIRE(mailbox.ok());
        return std::move(mailbox).value();
    }
};

// Each line of a transcript, without its CRLF.
std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find("\r\n", start);
        if (end == std::string::npos) {
            lines.push_back(text.substr(start));
            break;
        }
        lines.push_back(text.substr(start, end - start));
        start = end + 2;
    }
    return lines;
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("pop3 session: greeting with the APOP timestamp, CAPA, QUIT (RFC 1939 §4, §7; RFC 2449 §5)") {
    Fixture fixture;
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("CAPA\r\n");
        client.read_until("\r\n.\r\n");
        client.send("QUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    REQUIRE(lines.size() == 12);
    CHECK(lines[0].rfind("+OK facteur POP3 ready <", 0) == 0);
    std::string timestamp = timestamp_of(lines[0]);
    CHECK(timestamp.rfind(fmt::format("<{}.", getpid()), 0) == 0);
    CHECK(timestamp.size() > 20);
    CHECK(timestamp.substr(timestamp.size() - 18) == "@pop.example.test>");
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"+OK Capability list follows", "TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE",
                                   "PIPELINING", "SASL PLAIN LOGIN", "IMPLEMENTATION facteur", ".", "+OK Bye"});

    // Two sessions never share a timestamp; without APOP there is none.
    std::string again = lines_of(fixture.run([](Client& client) { client.read_line(); }))[0];
    CHECK(timestamp_of(again) != timestamp);
    fixture.settings.apop = false;
    std::string plain = fixture.run([](Client& client) {
        client.read_line();
        client.send("APOP alice 0123456789abcdef0123456789abcdef\r\nQUIT\r\n");
        client.read_to_eof();
    });
    CHECK(lines_of(plain) == std::vector<std::string>{"+OK facteur POP3 ready", "-ERR APOP not available", "+OK Bye"});
}

TEST_CASE("pop3 session: a whole pipelined session in one write, replies in order (RFC 2449 §6.6)") {
    Fixture fixture;
    fixture.fill_alice();
    const uint64_t s1 = store::served_size(kMessage1), s2 = store::served_size(kMessage2),
                   s3 = store::served_size(kMessage3), total = s1 + s2 + s3;
    const auto& uid = fixture.alice_uids;
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send(
            "USER alice@example.test\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 1\r\nRETR 1\r\n"
            "TOP 3 1\r\nLAST\r\nDELE 2\r\nSTAT\r\nLIST 2\r\nRETR 2\r\nDELE 2\r\nUIDL\r\nRSET\r\nLAST\r\nNOOP\r\n"
            "DELE 3\r\nCAPA\r\nQUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    std::vector<std::string> expected = {
        "+OK Send your password",
        "+OK Logged in.",
        fmt::format("+OK 3 {}", total),
        fmt::format("+OK 3 messages ({} octets)", total),
        fmt::format("1 {}", s1),
        fmt::format("2 {}", s2),
        fmt::format("3 {}", s3),
        ".",
        fmt::format("+OK 2 {}", s2),
        "+OK",
        "1 " + uid[0],
        "2 " + uid[1],
        "3 " + uid[2],
        ".",
        "+OK 1 " + uid[0],
        fmt::format("+OK {} octets", s1),
        "From: a@example.test",
        "Subject: one",
        "",
        "Hello",
        "..dot line",  // RFC 1939 §3 byte-stuffing
        ".",
        "+OK",
        "Subject: three",
        "",
        "l1",
        ".",
        "+OK 3",  // RFC 1460 LAST
        "+OK message 2 deleted",
        fmt::format("+OK 2 {}", s1 + s3),
        "-ERR no such message",  // a deleted message is invisible
        "-ERR no such message",
        "-ERR message 2 already deleted",
        "+OK",
        "1 " + uid[0],
        "3 " + uid[2],
        ".",
        fmt::format("+OK maildrop has 3 messages ({} octets)", total),
        "+OK 0",
        "+OK",
        "+OK message 3 deleted",
        "+OK Capability list follows",
        "TOP",
        "USER",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "SASL PLAIN LOGIN",
        "IMPLEMENTATION facteur",
        ".",
        "+OK Logging out, messages deleted: 1",
    };
    REQUIRE(lines.size() == expected.size() + 1);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) == expected);

    // QUIT committed: message 3 is gone, message 1 (RETR) is \Seen, 2 is not.
    auto mailbox = fixture.open_alice();
    REQUIRE(mailbox->count() == 2);
    CHECK(mailbox->uid(0) == uid[0]);
    CHECK(mailbox->uid(1) == uid[1]);
    CHECK(mailbox->seen(0));
    CHECK_FALSE(mailbox->seen(1));
}

TEST_CASE("pop3 session: a dropped connection deletes nothing and keeps \\Seen (RFC 1939 §6)") {
    Fixture fixture;
    fixture.fill_alice();
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\nDELE 1\r\nRETR 2\r\n");
        client.read_until("\r\n.\r\n");
    });
    CHECK(contains(text, "+OK message 1 deleted\r\n"));
    CHECK(contains(text, "body2\r\n.\r\n"));
    auto mailbox = fixture.open_alice();
    REQUIRE(mailbox->count() == 3);
    CHECK_FALSE(mailbox->seen(0));
    CHECK(mailbox->seen(1));
    CHECK_FALSE(mailbox->seen(2));
}

TEST_CASE("pop3 session: USER/PASS failures, PASS without USER, the failure limit") {
    Fixture fixture;
    fixture.fill_alice();
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send(
            "USER alice\r\nPASS wrong\r\nPASS secret\r\nUSER alice\r\nPASS bad\r\nUSER nobody\r\nPASS secret\r\n"
            "STAT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"+OK Send your password", "-ERR [AUTH] Authentication failed.",
                                   "-ERR No user name given (send USER first)", "+OK Send your password",
                                   "-ERR [AUTH] Authentication failed.", "+OK Send your password",
                                   "-ERR [AUTH] Too many failures"});
}

TEST_CASE("pop3 session: APOP (RFC 1939 §7), also where plain text is refused") {
    Fixture fixture;
    fixture.fill_alice();
    fixture.settings.plaintext_auth = PlaintextAuth::no;
    std::string text = fixture.run([](Client& client) {
        std::string timestamp = timestamp_of(client.read_line());
        std::string digest = auth::apop_digest(timestamp, kApopSecret);
        std::string upper;
        for (char c : digest) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        client.send("APOP alice 0123\r\nAPOP alice 0123456789abcdef0123456789abcdef\r\n");
        client.send("APOP alice@example.test " + upper + "\r\nSTAT\r\nQUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    const uint64_t total =
        store::served_size(kMessage1) + store::served_size(kMessage2) + store::served_size(kMessage3);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"-ERR Usage: APOP name digest", "-ERR [AUTH] Authentication failed.",
                                   "+OK Logged in.", fmt::format("+OK 3 {}", total),
                                   "+OK Logging out, messages deleted: 0"});
}

TEST_CASE("pop3 session: AUTH PLAIN and LOGIN with and without initial response (RFC 5034)") {
    Fixture fixture;
    fixture.fill_alice();
    const std::string plain = base64::encode(std::string("\0alice@example.test\0secret", 26));

    SECTION("PLAIN with an initial response") {
        std::string text = fixture.run([&](Client& client) {
            client.read_line();
            client.send("AUTH PLAIN " + plain + "\r\nQUIT\r\n");
            client.read_to_eof();
        });
        CHECK(lines_of(text).at(1) == "+OK Logged in.");
    }
    SECTION("PLAIN after an empty challenge") {
        std::string text = fixture.run([&](Client& client) {
            client.read_line();
            client.send("auth plain\r\n");
            if (client.read_line() != "+ \r\n") return;
            client.send(plain + "\r\nQUIT\r\n");
            client.read_to_eof();
        });
        auto lines = lines_of(text);
        CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
              std::vector<std::string>{"+ ", "+OK Logged in.", "+OK Logging out, messages deleted: 0"});
    }
    SECTION("LOGIN") {
        std::string text = fixture.run([&](Client& client) {
            client.read_line();
            client.send("AUTH LOGIN\r\n");
            client.read_line();
            client.send(base64::encode("alice") + "\r\n");
            client.read_line();
            client.send(base64::encode("secret") + "\r\nQUIT\r\n");
            client.read_to_eof();
        });
        auto lines = lines_of(text);
        CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
              std::vector<std::string>{"+ " + base64::encode("Username:"), "+ " + base64::encode("Password:"),
                                       "+OK Logged in.", "+OK Logging out, messages deleted: 0"});
    }
    SECTION("cancel, bad base64, unknown mechanism, the mechanism list, a wrong password, authzid") {
        std::string text = fixture.run([&](Client& client) {
            client.read_line();
            client.send("AUTH PLAIN\r\n");
            client.read_line();
            client.send("*\r\nAUTH PLAIN !!!!\r\nAUTH LOGIN\r\n");
            client.read_line();
            client.read_line();
            client.read_line();
            client.send("not base64!\r\nAUTH CRAM-MD5\r\nAUTH\r\n");
            client.read_until("\r\n.\r\n");
            client.send("AUTH PLAIN " + base64::encode(std::string("\0alice\0nope", 11)) + "\r\n");
            client.read_line();
            client.send("AUTH PLAIN " + base64::encode(std::string("bob\0alice\0secret", 17)) + "\r\nQUIT\r\n");
            client.read_to_eof();
        });
        auto lines = lines_of(text);
        CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
              std::vector<std::string>{"+ ",
                                       "-ERR Authentication cancelled",
                                       "-ERR Invalid base64 data in initial response",
                                       "+ " + base64::encode("Username:"),
                                       "-ERR Invalid base64 data",
                                       "-ERR Unsupported authentication mechanism",
                                       "+OK",
                                       "PLAIN",
                                       "LOGIN",
                                       ".",
                                       "-ERR [AUTH] Authentication failed.",
                                       "-ERR [AUTH] Authentication failed.",
                                       "+OK Bye"});
    }
}

TEST_CASE("pop3 session: the plaintext policy (plaintext_auth)") {
    Fixture fixture;
    fixture.fill_alice();
    const std::string refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections";
    auto script = [](Client& client) {
        client.read_line();
        client.send("CAPA\r\nUSER alice\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH\r\nQUIT\r\n");
        client.read_to_eof();
    };
    std::vector<std::string> refusal = {"+OK Capability list follows",
                                        "TOP",
                                        "UIDL",
                                        "RESP-CODES",
                                        "AUTH-RESP-CODE",
                                        "PIPELINING",
                                        "IMPLEMENTATION facteur",
                                        ".",
                                        refused,
                                        refused,
                                        "+OK",
                                        ".",
                                        "+OK Bye"};

    SECTION("no: refused before TLS") {
        fixture.settings.plaintext_auth = PlaintextAuth::no;
        auto lines = lines_of(fixture.run(script));
        CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) == refusal);
        lines = lines_of(fixture.run(script, Transport::tcp_loopback));
        CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) == refusal);
    }
    SECTION("loopback: allowed from 127.0.0.1 only") {
        fixture.settings.plaintext_auth = PlaintextAuth::loopback;
        auto lines = lines_of(fixture.run(script));  // a Unix socket is not loopback
        CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) == refusal);
        std::string text = fixture.run(script, Transport::tcp_loopback);
        CHECK(contains(text, "\r\nUSER\r\n"));
        CHECK(contains(text, "\r\nSASL PLAIN LOGIN\r\n"));
        CHECK(contains(text, "+OK Send your password\r\n"));
        CHECK(contains(text, "+OK Logged in.\r\n"));
        CHECK_FALSE(contains(text, refused));
    }
}

TEST_CASE("pop3 session: a mailbox locked by another POP3 session gets [IN-USE] (RFC 2449 §8.1.1)") {
    Fixture fixture;
    fixture.fill_alice();
    auto lock = store::SessionLock::try_acquire(fixture.alice);
    REQUIRE(lock.ok());
    REQUIRE(lock->has_value());
    std::optional<store::SessionLock> held = std::move(*lock);
    std::string text = fixture.run([&](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\nSTAT\r\n");
        client.read_line();
        client.read_line();
        client.read_line();
        held.reset();  // the other session ends
        client.send("USER alice\r\nPASS secret\r\nQUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"+OK Send your password", "-ERR [IN-USE] Mailbox is locked by another POP3 session",
                                   "-ERR STAT not allowed before login", "+OK Send your password", "+OK Logged in.",
                                   "+OK Logging out, messages deleted: 0"});
}

TEST_CASE("pop3 session: unknown commands, wrong states, long lines, then the error limit") {
    Fixture fixture;
    fixture.fill_alice();
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("FOO\r\nSTAT\r\n" + std::string(600, 'N') + "\r\n\r\nNOOP\rX\r\nCAPA\r\n");
        client.read_until("\r\n.\r\n");
        client.send("user alice\r\npass secret\r\nUSER alice\r\nXTND XMIT\r\nNOOP\r\n");
        for (int i = 0; i < 5; ++i) client.send("BAD!\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    REQUIRE(lines.size() > 8);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.begin() + 6) ==
          std::vector<std::string>{"-ERR Unknown command: FOO", "-ERR STAT not allowed before login",
                                   "-ERR Line too long", "-ERR Empty command", "-ERR Invalid characters in command"});
    CHECK(lines[6] == "+OK Capability list follows");
    // Errors 6 to 10 (error_limit): the tenth closes the session.
    std::vector<std::string> tail(lines.end() - 9, lines.end());
    CHECK(tail == std::vector<std::string>{"+OK Send your password", "+OK Logged in.", "-ERR USER not allowed after login",
                                           "-ERR Unknown command: XTND", "+OK", "-ERR Unknown command",
                                           "-ERR Unknown command", "-ERR Unknown command",
                                           "-ERR Too many bad commands, closing connection"});
}

TEST_CASE("pop3 session: authd trouble is [SYS/TEMP] (RFC 3206)") {
    Fixture fixture;
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("USER down\r\nPASS secret\r\nQUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"+OK Send your password",
                                   "-ERR [SYS/TEMP] Temporary authentication failure, try again later",
                                   "+OK Bye"});

    // authd not listening at all.
    fixture.auth = std::make_unique<auth_lookup::Client>(fixture.loop, fixture.dir.file("no-such-socket"));
    text = fixture.run([](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\nQUIT\r\n");
        client.read_to_eof();
    });
    CHECK(contains(text, "-ERR [SYS/TEMP] Temporary authentication failure, try again later\r\n+OK Bye\r\n"));
}

TEST_CASE("pop3 session: STLS, then plain-text login (RFC 2595 §4)") {
    Fixture fixture;
    fixture.fill_alice();
    fixture.enable_tls();
    fixture.settings.plaintext_auth = PlaintextAuth::no;
    std::atomic<bool> handshake{false};
    std::string text = fixture.run([&](Client& client) {
        client.read_line();
        client.send("CAPA\r\n");
        client.read_until("\r\n.\r\n");
        // What follows STLS in clear text must never be executed.
        client.send("STLS\r\nUSER alice\r\nPASS secret\r\n");
        if (client.read_line() != "+OK Begin TLS negotiation\r\n") return;
        if (!client.start_tls()) return;
        handshake = true;
        client.send("CAPA\r\n");
        client.read_until("\r\n.\r\n");
        client.send("STLS\r\nPASS secret\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n");
        client.read_to_eof();
    });
    CHECK(handshake);
    auto lines = lines_of(text);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"+OK Capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE",
                                   "PIPELINING", "STLS", "IMPLEMENTATION facteur", ".",
                                   "+OK Begin TLS negotiation",
                                   // After TLS: USER and SASL allowed, STLS gone.
                                   "+OK Capability list follows", "TOP", "USER", "UIDL", "RESP-CODES",
                                   "AUTH-RESP-CODE", "PIPELINING", "SASL PLAIN LOGIN", "IMPLEMENTATION facteur", ".",
                                   "-ERR TLS already active", "-ERR No user name given (send USER first)",
                                   "+OK Send your password", "+OK Logged in.",
                                   "+OK Logging out, messages deleted: 0"});
}

TEST_CASE("pop3 session: STLS without TLS configured, and implicit TLS on pop3s (RFC 8314)") {
    Fixture fixture;
    fixture.fill_alice();
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("STLS\r\nQUIT\r\n");
        client.read_to_eof();
    });
    CHECK(contains(text, "-ERR TLS not available\r\n+OK Bye\r\n"));

    fixture.enable_tls();
    fixture.settings.plaintext_auth = PlaintextAuth::no;
    text = fixture.run(
        [](Client& client) {
            if (!client.start_tls()) return;
            client.read_line();
            client.send("CAPA\r\nSTLS\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n");
            client.read_to_eof();
        },
        Transport::socketpair, PortKind::pop3s);
    CHECK(contains(text, "+OK facteur POP3 ready <"));
    CHECK(contains(text, "\r\nUSER\r\n"));
    CHECK_FALSE(contains(text, "\r\nSTLS\r\n"));
    CHECK(contains(text, "-ERR TLS already active\r\n+OK Send your password\r\n+OK Logged in.\r\n"));
}

TEST_CASE("pop3 session: idle timeouts before and after login; nothing deleted") {
    Fixture fixture;
    fixture.fill_alice();
    fixture.settings.login_idle_timeout = std::chrono::milliseconds(200);
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.read_to_eof();
    });
    CHECK(lines_of(text).at(1) == "-ERR Disconnected for inactivity.");

    fixture.settings.login_idle_timeout = std::chrono::seconds(60);
    fixture.settings.idle_timeout = std::chrono::milliseconds(300);
    text = fixture.run([](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\nDELE 1\r\nTOP 3 0\r\n");
        client.read_to_eof();
    });
    CHECK(contains(text, "+OK message 1 deleted\r\n+OK\r\nSubject: three\r\n\r\n.\r\n-ERR Disconnected for inactivity.\r\n"));
    auto mailbox = fixture.open_alice();
    CHECK(mailbox->count() == 3);
    CHECK(mailbox->seen(2));  // TOP marks \Seen too
}

TEST_CASE("pop3 session: server shutdown in TRANSACTION deletes nothing") {
    Fixture fixture;
    fixture.fill_alice();
    std::atomic<bool> logged_in{false};
    bool told = false;
    fixture.on_tick = [&](Session& session) {
        if (logged_in && !told) {
            told = true;
            session.shutdown();
        }
    };
    std::string text = fixture.run([&](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\nDELE 1\r\n");
        client.read_until("deleted\r\n");
        logged_in = true;
        client.read_to_eof();
    });
    CHECK(contains(text, "+OK message 1 deleted\r\n-ERR [SYS/TEMP] Server shutting down\r\n"));
    CHECK(fixture.open_alice()->count() == 3);
}

TEST_CASE("pop3 session: an mbox mailbox (RETR, DELE, QUIT)") {
    Fixture fixture;
    fixture.fill_bob();
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("USER bob\r\nPASS secret\r\nLIST\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    const uint64_t s1 = store::served_size(kMessage1), s3 = store::served_size(kMessage3);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.end()) ==
          std::vector<std::string>{"+OK Send your password", "+OK Logged in.",
                                   fmt::format("+OK 2 messages ({} octets)", s1 + s3), fmt::format("1 {}", s1),
                                   fmt::format("2 {}", s3), ".", fmt::format("+OK {} octets", s3), "Subject: three",
                                   "", "l1", "l2", "l3", ".", "+OK message 1 deleted",
                                   "+OK Logging out, messages deleted: 1"});
    auto mailbox = store::open_inbox(fixture.bob, store::Format::mbox);
    REQUIRE(mailbox.ok());
    REQUIRE((*mailbox)->count() == 1);
    CHECK((*mailbox)->seen(0));
}

TEST_CASE("pop3 session: a big message is streamed exactly, several times in one pipelined write") {
    Fixture fixture;
    std::string body;
    for (int i = 0; body.size() < 1024 * 1024; ++i) body += (i % 3 == 0 ? ".line " : "line ") + std::to_string(i) + "\n";
    const std::string message = "Subject: big\n\n" + body;
    std::string maildir = store::maildir_path(fixture.alice);
    REQUIRE(store::create_maildir(maildir).ok());
    REQUIRE(store::deliver_to_maildir(maildir, "test.example", store::source_from_string(message)).ok());
    const uint64_t size = store::served_size(message);
    std::string text = fixture.run([](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\nRETR 1\r\nRETR 1\r\nRETR 1\r\nSTAT\r\nQUIT\r\n");
        client.read_to_eof();
    });
    // The served form, byte-stuffed, as RFC 1939 §3 puts it on the wire.
    std::string stuffed;
    for (size_t start = 0; start < message.size();) {
        size_t end = message.find('\n', start);
        std::string line = message.substr(start, end - start);
        if (!line.empty() && line[0] == '.') stuffed += '.';
        stuffed += line + "\r\n";
        start = end + 1;
    }
    std::string retr = fmt::format("+OK {} octets\r\n", size) + stuffed + ".\r\n";
    std::string expected = "+OK Send your password\r\n+OK Logged in.\r\n" + retr + retr + retr +
                           fmt::format("+OK 1 {}\r\n", size) + "+OK Logging out, messages deleted: 0\r\n";
    size_t greeting_end = text.find("\r\n") + 2;
    CHECK(text.size() == greeting_end + expected.size());
    CHECK(text.substr(greeting_end) == expected);
}

TEST_CASE("pop3 session: thousands of pipelined commands, replies in order and input bounded") {
    Fixture fixture;
    fixture.fill_alice();
    std::string burst;
    for (int i = 0; i < 3000; ++i) burst += (i % 2 == 0) ? "LIST\r\n" : "UIDL 2\r\n";
    std::string text = fixture.run([&](Client& client) {
        client.read_line();
        client.send("USER alice\r\nPASS secret\r\n" + burst + "QUIT\r\n");
        client.read_to_eof();
    });
    auto lines = lines_of(text);
    // Greeting, USER, PASS, 1500 x (LIST: 5 lines), 1500 x (UIDL n: 1 line), QUIT.
    REQUIRE(lines.size() == 1 + 2 + 1500 * 5 + 1500 + 1);
    CHECK(lines[3].rfind("+OK 3 messages", 0) == 0);
    CHECK(lines[8] == "+OK 2 " + fixture.alice_uids[1]);
    CHECK(lines.back() == "+OK Logging out, messages deleted: 0");
}
