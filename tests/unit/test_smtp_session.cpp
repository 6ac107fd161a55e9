// Unit tests for the smtpd session state machine over a socketpair, with an
// in-process fake authd on a Unix socket: PIPELINING order (RFC 2920),
// relay and recipient replies, smuggling refusal, BDAT, submission rules,
// and that an accepted message is a committed queue file in incoming/.
#include <sys/socket.h>
#include <poll.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "libmail/auth_lookup.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/log.hpp"
#include "libmail/queue.hpp"
#include "libmail/queue_control.hpp"
#include "smtpd/qmgr_wakeup.hpp"
#include "smtpd/smtp_session.hpp"
#include "test_support.hpp"

using namespace facteur;
using namespace facteur::smtpd;

namespace {

// authd's lookup socket as smtpd sees it: alice is a user, staff an alias,
// other example.test addresses unknown, everything else remote.
ipc::Frame fake_authd(const ipc::Frame& request) {
    auto op = auth_lookup::serve::op(request);
    if (!op) return auth_lookup::serve::error_reply(op.error());
    if (*op == auth_lookup::Op::verify) {
        auto verify = auth_lookup::serve::verify(request);
        auth_lookup::VerifyReply reply;
        reply.user = verify->user;
        reply.result = verify->password == "secret" ? auth_lookup::Outcome::ok : auth_lookup::Outcome::fail;
        return auth_lookup::serve::verify_reply(reply);
    }
    auto address = auth_lookup::serve::address(request);
    if (!address) return auth_lookup::serve::error_reply(address.error());
    auth_lookup::Resolution resolution;
    if (*address == "alice@example.test") {
        resolution.kind = auth_lookup::RecipientKind::local_user;
        auth_lookup::UserInfo user;
        user.address = *address;
        user.mail_path = "/nonexistent/example.test/alice";
        user.format = "maildir";
        resolution.user = user;
    } else if (*address == "staff@example.test") {
        resolution.kind = auth_lookup::RecipientKind::alias;
        resolution.targets = {"alice@example.test"};
    } else if (address->size() > 13 && address->substr(address->size() - 13) == "@example.test") {
        resolution.kind = auth_lookup::RecipientKind::unknown_local;
    } else {
        resolution.kind = auth_lookup::RecipientKind::remote;
    }
    return auth_lookup::serve::resolve_reply(resolution);
}

struct Fixture {
    test::TempDir dir;
    event::Loop loop;
    event::WorkerPool pool{loop, 1};
    std::unique_ptr<ipc::Server> authd;
    std::unique_ptr<auth_lookup::Client> auth;
    std::unique_ptr<QmgrWakeup> qmgr;
    queue::Spool spool{dir.file("spool")};
    Settings settings;

    Fixture() {
        log::set_minimum(log::Level::warning);  // keep the test output readable
        std::filesystem::create_directory(spool.root());
        REQUIRE(spool.create_folders().ok());
        auto socket = event::listen_unix(dir.file("auth-lookup"), 0600);
        REQUIRE(socket.ok());
        authd = std::make_unique<ipc::Server>(
            loop, std::move(socket).value(),
            [](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                respond(fake_authd(request));
            });
        auth = std::make_unique<auth_lookup::Client>(loop, dir.file("auth-lookup"));
        qmgr = std::make_unique<QmgrWakeup>(loop, dir.file("qmgr-absent"));
        settings.service = "smtpd";
        settings.myhostname = "mx.example.test";
        settings.banner = "mx.example.test ESMTP facteur";
        settings.message_size_limit = 10000;
        settings.data_line_limit = 1000;
        settings.error_limit = 100;
        settings.recipient_limit = 3;
        settings.auth_requires_tls = true;
        settings.spool_dir = spool.root();
    }

    // Runs one session: the client writes `input` at once and reads until
    // it has `replies` complete replies (or the peer closes).
    std::string converse(const std::string& input, size_t replies, PortKind kind = PortKind::smtp) {
        int pair[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
        UniqueFd server_end(pair[0]), client_end(pair[1]);
        SessionServices services{settings, loop, pool, *auth, *qmgr, spool, nullptr};
        auto session = std::make_shared<Session>(services, event::Connection::create(loop, std::move(server_end)), kind);
        bool finished = false;
        session->start([&finished] { finished = true; });

        std::atomic<bool> done{false};
        std::string received;
        std::thread client([&] {
            size_t written = 0;
            while (written < input.size()) {
                ssize_t n = ::write(client_end.get(), input.data() + written, input.size() - written);
                if (n <= 0) break;
                written += static_cast<size_t>(n);
            }
            size_t complete = 0;
            size_t scanned = 0;
            while (complete < replies) {
                pollfd poller{client_end.get(), POLLIN, 0};
                if (poll(&poller, 1, 5000) <= 0) break;
                char buffer[4096];
                ssize_t n = ::read(client_end.get(), buffer, sizeof buffer);
                if (n <= 0) break;
                received.append(buffer, static_cast<size_t>(n));
                // A reply is complete at a line whose 4th byte is a space.
                size_t end;
                while ((end = received.find("\r\n", scanned)) != std::string::npos) {
                    if (end - scanned >= 4 && received[scanned + 3] == ' ') ++complete;
                    scanned = end + 2;
                }
            }
            done = true;
        });
        event::Timer watcher(loop, [&] {
            if (done) loop.stop();
        });
        watcher.start_repeating(std::chrono::milliseconds(5));
        CHECK(test::run_until_stopped(loop, std::chrono::seconds(20)));
        client.join();
        client_end.reset();
        // Let the session see the close and finish.
        event::Timer settle(loop, [&] { loop.stop(); });
        settle.start(std::chrono::milliseconds(50));
        loop.run();
        session.reset();
        return received;
    }

    size_t incoming() {
        auto ids = spool.list(queue::Folder::incoming);
        REQUIRE(ids.ok());
        return ids->size();
    }
};

// The code (and enhanced code) of every reply, in order: "250 2.1.0".
std::vector<std::string> codes(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find("\r\n", start);
        if (end == std::string::npos) break;
        std::string line = text.substr(start, end - start);
        start = end + 2;
        if (line.size() >= 4 && line[3] == ' ') {
            size_t second = line.find(' ', 4);
            std::string enhanced = line.substr(4, second == std::string::npos ? std::string::npos : second - 4);
            bool has_enhanced = enhanced.size() >= 5 && enhanced[1] == '.';
            out.push_back(has_enhanced ? line.substr(0, 4) + enhanced : line.substr(0, 3));
        }
    }
    return out;
}

}  // namespace

TEST_CASE("session: a whole pipelined transaction gets every reply in order (RFC 2920)") {
    Fixture fixture;
    std::string text = fixture.converse(
        "EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        "RCPT TO:<ghost@example.test>\r\nRCPT TO:<x@remote.test>\r\nRCPT TO:<staff@example.test>\r\nDATA\r\n"
        "Subject: t\r\n\r\n..dot\r\n.\r\nNOOP\r\nQUIT\r\n",
        10);
    auto got = codes(text);
    REQUIRE(got.size() >= 10);
    CHECK(got == std::vector<std::string>{"220", "250", "250 2.1.0", "250 2.1.5", "550 5.1.1", "554 5.7.1", "250 2.1.5",
                                          "354", "250 2.0.0", "250 2.0.0", "221 2.0.0"});
    CHECK(text.find("250-PIPELINING\r\n") != std::string::npos);
    CHECK(text.find("STARTTLS") == std::string::npos);  // no TLS configured
    CHECK(text.find("AUTH") == std::string::npos);      // not over plain text
    REQUIRE(fixture.incoming() == 1);
    auto ids = fixture.spool.list(queue::Folder::incoming);
    auto reader = queue::Reader::open(fixture.spool.file_path(queue::Folder::incoming, ids->front()));
    REQUIRE(reader.ok());
    CHECK(reader->envelope().sender == "a@remote.test");
    REQUIRE(reader->envelope().recipients.size() == 2);
    CHECK(reader->envelope().recipients[1].address == "staff@example.test");
    auto message = reader->message();
    REQUIRE(message.ok());
    CHECK(message->rfind("Received: from client.test (unknown [unix])\r\n", 0) == 0);
    CHECK(message->find("Subject: t\r\n\r\n.dot\r\n") != std::string::npos);
}

TEST_CASE("session: smuggled end-of-data variants queue nothing and keep the session") {
    auto variant = GENERATE(as<std::string>{}, "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r");
    Fixture fixture;
    std::string text = fixture.converse("HELO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
                                        "x" + variant + "MAIL FROM:<e@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
                                        "DATA\r\ny\r\n.\r\nRSET\r\nQUIT\r\n",
                                        8);
    CHECK(codes(text) ==
          std::vector<std::string>{"220", "250", "250 2.1.0", "250 2.1.5", "354", "550 5.6.11", "250 2.0.0", "221 2.0.0"});
    CHECK(fixture.incoming() == 0);
}

TEST_CASE("session: BDAT chunks, and a refused BDAT's chunk is skipped (RFC 3030)") {
    Fixture fixture;
    std::string text = fixture.converse(
        "EHLO c\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@remote.test> BODY=BINARYMIME\r\nRCPT TO:<alice@example.test>\r\n"
        "DATA\r\nBDAT 3\r\na\nbBDAT 2 LAST\r\nc\rQUIT\r\n",
        9);
    CHECK(codes(text) == std::vector<std::string>{"220", "250", "503 5.5.1", "250 2.1.0", "250 2.1.5", "503 5.5.1",
                                                   "250 2.0.0", "250 2.0.0", "221 2.0.0"});
    CHECK(text.find("250 2.0.0 3 octets received") != std::string::npos);
    CHECK(fixture.incoming() == 1);
}

TEST_CASE("session: limits and sequence errors") {
    Fixture fixture;
    std::string text = fixture.converse(
        "MAIL FROM:<a@remote.test>\r\nEHLO c\r\nSTARTTLS\r\nAUTH PLAIN AGEAc2VjcmV0\r\n"
        "MAIL FROM:<a@remote.test> SIZE=20000\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n"
        "RCPT TO:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\n"
        "RCPT TO:<user%remote.test@example.test>\r\nVRFY x\r\nEXPN staff@example.test\r\nQUIT\r\n",
        15);
    CHECK(codes(text) == std::vector<std::string>{"220", "503 5.5.1", "250", "454 4.7.0", "538 5.7.11", "552 5.3.4",
                                                   "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3",
                                                   "452 4.5.3", "252 2.5.0", "502 5.5.1", "221 2.0.0"});
}

TEST_CASE("session: submission needs AUTH; PLAIN over clear text only when allowed") {
    Fixture fixture;
    fixture.settings.auth_requires_tls = false;
    std::string text = fixture.converse(
        "EHLO c\r\nMAIL FROM:<alice@example.test>\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n"
        "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\nMAIL FROM:<alice@example.test>\r\n"
        "RCPT TO:<far@remote.test>\r\nEXPN staff@example.test\r\nQUIT\r\n",
        9, PortKind::submission);
    CHECK(codes(text) == std::vector<std::string>{"220", "250", "530 5.7.0", "535 5.7.8", "235 2.7.0", "250 2.1.0",
                                                   "250 2.1.5", "502 5.5.1", "221 2.0.0"});
    CHECK(text.find("250-AUTH PLAIN LOGIN\r\n") != std::string::npos);
}

TEST_CASE("session: error limit closes with 421 4.7.0") {
    Fixture fixture;
    fixture.settings.error_limit = 2;
    std::string text = fixture.converse("FOO\r\nBAR\r\nNOOP\r\n", 4);
    CHECK(codes(text) == std::vector<std::string>{"220", "500 5.5.2", "500 5.5.2", "421 4.7.0"});
}

namespace {

// qmgr's socket as ETRN sees it: counts two messages for remote.test (and,
// with subdomains, for its subdomains), none elsewhere; records requests.
struct FakeQmgr {
    std::vector<std::pair<std::string, bool>> flushes;  // domain, subdomains
    std::unique_ptr<ipc::Server> server;

    explicit FakeQmgr(Fixture& fixture) {
        auto socket = event::listen_unix(fixture.dir.file("qmgr"), 0600);
        REQUIRE(socket.ok());
        server = std::make_unique<ipc::Server>(
            fixture.loop, std::move(socket).value(),
            [this](const ipc::Frame& frame, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                auto request = queue_control::decode_request(frame);
                if (!request || request->op != queue_control::Op::flush) {
                    respond(ipc::error_reply("unexpected request"));
                    return;
                }
                flushes.emplace_back(request->domain, request->subdomains);
                respond(queue_control::count_reply(request->domain == "remote.test" ? 2 : 0));
            });
        fixture.qmgr = std::make_unique<QmgrWakeup>(fixture.loop, fixture.dir.file("qmgr"));
    }
};

}  // namespace

TEST_CASE("session: ETRN from an untrusted client is refused with 459 (RFC 1985)") {
    Fixture fixture;
    FakeQmgr qmgr(fixture);
    std::string text = fixture.converse("EHLO c\r\nETRN remote.test\r\nETRN @remote.test\r\nQUIT\r\n", 5);
    CHECK(codes(text) == std::vector<std::string>{"220", "250", "459 4.7.1", "459 4.7.1", "221 2.0.0"});
    CHECK(text.find("459 4.7.1 remote.test: client not authorized\r\n") != std::string::npos);
    CHECK(text.find("250-ETRN\r\n") != std::string::npos);  // announced on port 25
    CHECK(qmgr.flushes.empty());
}

TEST_CASE("session: ETRN from an authenticated client asks qmgr to flush the domain") {
    Fixture fixture;
    fixture.settings.auth_requires_tls = false;
    FakeQmgr qmgr(fixture);
    std::string text = fixture.converse(
        "ETRN remote.test\r\nEHLO c\r\nETRN remote.test\r\n"
        "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n"
        "ETRN Remote.TEST\r\nETRN @quiet.test\r\nETRN #outbound\r\nETRN bad..domain\r\nETRN\r\nETRN [192.0.2.1]\r\n"
        "MAIL FROM:<alice@example.test>\r\nETRN remote.test\r\nRSET\r\nQUIT\r\n",
        15);
    CHECK(codes(text) == std::vector<std::string>{"220", "503 5.5.1", "250", "459 4.7.1", "235 2.7.0", "250 2.0.0",
                                                   "251 2.0.0", "458 4.1.0", "501 5.5.4", "501 5.5.4", "501 5.5.4",
                                                   "250 2.1.0", "503 5.5.1", "250 2.0.0", "221 2.0.0"});
    CHECK(text.find("250 2.0.0 Queuing for node Remote.TEST started\r\n") != std::string::npos);
    CHECK(text.find("251 2.0.0 OK, no messages waiting for node quiet.test\r\n") != std::string::npos);
    CHECK(text.find("503 5.5.1 Error: MAIL transaction in progress\r\n") != std::string::npos);
    CHECK(qmgr.flushes ==
          std::vector<std::pair<std::string, bool>>{{"remote.test", false}, {"quiet.test", true}});
}

TEST_CASE("session: ETRN when qmgr cannot be reached answers 458 4.3.0") {
    Fixture fixture;
    fixture.settings.auth_requires_tls = false;
    std::string text = fixture.converse(
        "EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\nETRN remote.test\r\nQUIT\r\n", 5);
    CHECK(codes(text) == std::vector<std::string>{"220", "250", "235 2.7.0", "458 4.3.0", "221 2.0.0"});
}

TEST_CASE("session: ETRN is announced on submission only after AUTH") {
    Fixture fixture;
    fixture.settings.auth_requires_tls = false;
    std::string text = fixture.converse(
        "EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\nEHLO c\r\nQUIT\r\n", 5, PortKind::submission);
    size_t second_ehlo = text.find("235 2.7.0");
    REQUIRE(second_ehlo != std::string::npos);
    CHECK(text.find("ETRN") > second_ehlo);
    CHECK(text.find("250-ETRN\r\n", second_ehlo) != std::string::npos);
}
