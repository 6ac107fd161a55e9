// sendmail's submission end to end in-process: a message on a pipe becomes
// a committed queue file in maildrop/, read back with queue::Reader.
#include <fcntl.h>
#include <sysexits.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "libmail/daemon.hpp"

#include <csignal>
#include <filesystem>
#include <thread>

#include "libmail/queue.hpp"
#include "sendmail/submit.hpp"
#include "test_support.hpp"

using namespace facteur;
using namespace facteur::sendmail;

namespace {

struct Fixture {
    test::TempDir dir;
    config::Config config;
    Submitter submitter{getuid(), "alice", "Alice Liddell"};

    Fixture() {
        REQUIRE(config.set("", "spool_dir", dir.file("spool")));
        REQUIRE(config.set("", "runtime_dir", dir.file("run")));
        REQUIRE(config.set("", "myhostname", "host.example"));
        REQUIRE(config.set("", "message_size_limit", "4K"));
        std::filesystem::create_directory(dir.file("spool"));
        REQUIRE(queue::Spool(dir.file("spool")).create_folders());
    }

    // Runs sendmail's submission with `input` on a pipe written by a thread.
    Outcome run(std::vector<std::string> argv, std::string input) {
        argv.insert(argv.begin(), "sendmail");
        auto options = parse_options(argv);
        REQUIRE(options);
        int fds[2];
        REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
        UniqueFd read_end(fds[0]), write_end(fds[1]);
        std::thread writer([fd = std::move(write_end), input]() mutable {
            size_t written = 0;
            while (written < input.size()) {
                ssize_t n = write(fd.get(), input.data() + written, input.size() - written);
                if (n <= 0) break;  // the reader stopped early (EPIPE)
                written += static_cast<size_t>(n);
            }
        });
        Outcome outcome = submit(*options, config, submitter, read_end.get());
        read_end.reset();
        writer.join();
        return outcome;
    }

    std::vector<std::string> maildrop() {
        auto ids = queue::Spool(dir.file("spool")).list(queue::Folder::maildrop);
        REQUIRE(ids);
        return *ids;
    }

    queue::Reader open(const std::string& id) {
        auto reader = queue::Reader::open(queue::Spool(dir.file("spool")).file_path(queue::Folder::maildrop, id));
        REQUIRE(reader);
        return std::move(reader).value();
    }
};

}  // namespace

TEST_CASE("a -t submission lands in maildrop with its envelope", "[sendmail][submit]") {
    signal(SIGPIPE, SIG_IGN);
    Fixture fixture;
    Outcome outcome = fixture.run({"-t", "-f", "sender@example.org", "-N", "failure", "-R", "hdrs", "-V", "env1",
                                   "extra@example.net"},
                                  "To: Bob <bob@example.org>\nBcc: secret@example.com\nSubject: hi\n\nline\n.\n");
    REQUIRE(outcome.exit_code == EX_OK);
    // qmgr is not running in this test: the wake-up fails, the mail is queued.
    CHECK(outcome.message.find("qmgr is not running") != std::string::npos);
    auto ids = fixture.maildrop();
    REQUIRE(ids == std::vector<std::string>{outcome.queue_id});

    queue::Reader reader = fixture.open(outcome.queue_id);
    const queue::Envelope& envelope = reader.envelope();
    CHECK(envelope.sender == "sender@example.org");
    REQUIRE(envelope.recipients.size() == 3);
    CHECK(envelope.recipients[0].address == "extra@example.net");
    CHECK(envelope.recipients[1].address == "bob@example.org");
    CHECK(envelope.recipients[2].address == "secret@example.com");
    CHECK(envelope.recipients[0].notify == queue::notify_failure);
    CHECK(envelope.ret == queue::Ret::headers);
    CHECK(envelope.envid == "env1");
    CHECK(envelope.protocol == "local");
    CHECK(envelope.client_address == "local");
    CHECK(envelope.auth_user == "alice");
    CHECK(envelope.submitter_uid == static_cast<int64_t>(getuid()));
    CHECK(envelope.body == queue::BodyType::seven_bit);

    auto message = reader.message();
    REQUIRE(message);
    CHECK(message->rfind("Received: (from alice@localhost)\r\n\tby host.example (facteur) id " + outcome.queue_id, 0) == 0);
    CHECK(message->find("Bcc") == std::string::npos);
    CHECK(message->find("secret@example.com") == std::string::npos);
    CHECK(message->find("\r\nFrom: Alice Liddell <sender@example.org>\r\n") != std::string::npos);
    CHECK(message->find("\r\nMessage-ID: <" + outcome.queue_id + "@host.example>\r\n") != std::string::npos);
    CHECK(message->size() >= 8);
    CHECK(message->substr(message->size() - 8) == "\r\nline\r\n");
    CHECK(reader.message_size() == message->size());
}

TEST_CASE("operands without -t, -i keeps dot lines, 8-bit is noticed", "[sendmail][submit]") {
    signal(SIGPIPE, SIG_IGN);
    Fixture fixture;
    Outcome outcome = fixture.run({"-oi", "-F", "Jörg", "bob"}, "Subject: caf\xc3\xa9\r\n\r\na\r\n.\r\nb");
    REQUIRE(outcome.exit_code == EX_OK);
    queue::Reader reader = fixture.open(outcome.queue_id);
    CHECK(reader.envelope().sender == "alice@host.example");
    REQUIRE(reader.envelope().recipients.size() == 1);
    CHECK(reader.envelope().recipients[0].address == "bob@host.example");
    CHECK(reader.envelope().body == queue::BodyType::eight_bit_mime);
    auto message = reader.message();
    REQUIRE(message);
    CHECK(message->find("From: =?UTF-8?B?SsO2cmc=?= <alice@host.example>\r\n") != std::string::npos);
    CHECK(message->substr(message->size() - 9) == "a\r\n.\r\nb\r\n");
}

TEST_CASE("a message without a header gets one", "[sendmail][submit]") {
    signal(SIGPIPE, SIG_IGN);
    Fixture fixture;
    Outcome outcome = fixture.run({"-f", "<>", "bob@example.org"}, "just a body line\nand another\n");
    REQUIRE(outcome.exit_code == EX_OK);
    queue::Reader reader = fixture.open(outcome.queue_id);
    CHECK(reader.envelope().sender.empty());
    auto message = reader.message();
    REQUIRE(message);
    // The null sender still has an author: the user.
    CHECK(message->find("\r\nFrom: Alice Liddell <alice@host.example>\r\n") != std::string::npos);
    CHECK(message->find("\r\n\r\njust a body line\r\nand another\r\n") != std::string::npos);
}

TEST_CASE("refused submissions leave nothing behind", "[sendmail][submit]") {
    signal(SIGPIPE, SIG_IGN);
    Fixture fixture;
    SECTION("no recipients at all") {
        Outcome outcome = fixture.run({}, "Subject: x\n\n");
        CHECK(outcome.exit_code == EX_USAGE);
        CHECK(outcome.message == "no recipients");
    }
    SECTION("-t but no recipient fields") {
        Outcome outcome = fixture.run({"-t"}, "Subject: x\n\nbody\n");
        CHECK(outcome.exit_code == EX_USAGE);
        CHECK(outcome.message == "no recipients");
    }
    SECTION("a bad operand") {
        Outcome outcome = fixture.run({"bob@"}, "Subject: x\n\n");
        CHECK(outcome.exit_code == EX_USAGE);
    }
    SECTION("a bad -t header") {
        Outcome outcome = fixture.run({"-t"}, "To: <broken\n\nbody\n");
        CHECK(outcome.exit_code == EX_DATAERR);
    }
    SECTION("over message_size_limit") {
        Outcome outcome = fixture.run({"bob"}, "Subject: big\n\n" + std::string(8192, 'x') + "\n");
        CHECK(outcome.exit_code == EX_CANTCREAT);
        CHECK(outcome.message.rfind("message too large", 0) == 0);
    }
    SECTION("a spool that cannot be written") {
        REQUIRE(fixture.config.set("", "spool_dir", fixture.dir.file("missing")));
        Outcome outcome = fixture.run({"bob"}, "Subject: x\n\n");
        CHECK(outcome.exit_code == EX_TEMPFAIL);
        CHECK(outcome.message.find("cannot queue the message") != std::string::npos);
        return;
    }
    CHECK(fixture.maildrop().empty());
    // Not even a temporary file.
    CHECK(std::distance(std::filesystem::directory_iterator(fixture.dir.file("spool/maildrop")),
                        std::filesystem::directory_iterator()) == 0);
}

TEST_CASE("the host name comes from myhostname or the system", "[sendmail][submit]") {
    config::Config config;
    REQUIRE(config.set("", "myhostname", "mail.example.org"));
    CHECK(*daemon::host_name(config) == "mail.example.org");
    REQUIRE(config.set("", "myhostname", "bad host"));
    CHECK_FALSE(daemon::host_name(config));
    config::Config defaults;
    CHECK(daemon::host_name(defaults));  // the system's name is valid here
}
