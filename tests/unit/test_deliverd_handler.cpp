// deliverd end to end in-process: a queue file written with queue::Writer,
// a delivery request through RequestHandler on a real loop and worker pool,
// and the delivered files checked byte for byte.
#include <dirent.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <fstream>
#include <optional>

#include "deliverd/request_handler.hpp"
#include "libmail/delivery_protocol.hpp"
#include "libmail/maildir.hpp"
#include "libmail/mbox.hpp"
#include "libmail/queue.hpp"
#include "tests/unit/test_support.hpp"

using namespace facteur;
using namespace facteur::delivery;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> files_in(const std::string& path) {
    std::vector<std::string> names;
    if (DIR* directory = opendir(path.c_str())) {
        while (dirent* entry = readdir(directory))
            if (entry->d_name[0] != '.') names.push_back(path + "/" + entry->d_name);
        closedir(directory);
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(text.size());
    size_t position = 0;
    for (size_t at = text.find(from); at != std::string_view::npos; at = text.find(from, position)) {
        out.append(text.substr(position, at - position));
        out.append(to);
        position = at + from.size();
    }
    out.append(text.substr(position));
    return out;
}

struct Fixture {
    test::TempDir dir;
    queue::Spool spool{dir.path};
    std::string mail = dir.file("mail");

    Fixture() { REQUIRE(spool.create_folders().ok()); }

    // A committed queue file holding `message`; returns its request skeleton.
    Request queue_message(const std::string& message, const std::string& sender = "alice@example.test") {
        std::string id = queue::new_queue_id();
        auto writer = queue::Writer::create(spool, queue::Folder::incoming, id);
        REQUIRE(writer.ok());
        REQUIRE(writer->append(message).ok());
        queue::Envelope envelope;
        envelope.queue_id = id;
        envelope.sender = sender;
        envelope.recipients = {{"bob@example.test", "", queue::notify_default}};
        envelope.arrival_time = time(nullptr);
        REQUIRE(writer->commit(envelope).ok());
        Request request;
        request.queue_id = id;
        request.queue_file = spool.file_path(queue::Folder::incoming, id);
        request.sender = sender;
        return request;
    }

    Target mailbox(const std::string& user, const std::string& format = "maildir", uint64_t quota = 0,
                   const std::string& folder = "") {
        Target target;
        target.recipient = user + "@example.test";
        target.kind = Kind::mailbox;
        target.user = target.recipient;
        target.mail_path = mail + "/example.test/" + user;
        target.format = format;
        target.quota_bytes = quota;
        target.folder = folder;
        return target;
    }

    std::string maildir(const std::string& user) { return store::maildir_path(mail + "/example.test/" + user); }
};

// Runs one request through the handler and returns the reply frame.
ipc::Frame run_request(const ipc::Frame& frame, deliverd::AgentSettings settings = {}) {
    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, 3);
    if (settings.hostname.empty()) settings.hostname = "mx.example.test";
    deliverd::RequestHandler handler(pool, settings);
    std::optional<ipc::Frame> reply;
    bool synchronous = true;
    handler.handle(frame, [&](const ipc::Frame& answer) {
        reply = answer;
        if (!synchronous) loop.stop();
    });
    synchronous = false;
    if (!reply) REQUIRE(test::run_until_stopped(loop, std::chrono::seconds(30)));
    REQUIRE(reply.has_value());
    return *reply;
}

const std::string kMessage =
    "Return-Path: <forged@evil.test>\r\n"
    "Delivered-To: loop@example.test\r\n"
    "Subject: test\r\n"
    "Status: RO\r\n"
    "\r\n"
    "Hello\r\n"
    "From the body\r\n"
    ".dot\r\n";

}  // namespace

TEST_CASE("deliverd delivers to Maildir, mbox and folders, byte for byte, in order") {
    Fixture fixture;
    Request request = fixture.queue_message(kMessage);
    REQUIRE(store::create_maildir(store::folder_path(fixture.maildir("erin"), "Lists")).ok());
    request.targets = {
        fixture.mailbox("bob"),
        fixture.mailbox("carol", "mbox"),
        fixture.mailbox("dave", "maildir", 0, "NoSuchFolder"),
        fixture.mailbox("erin", "maildir", 0, "Lists"),
        fixture.mailbox("loop"),
        fixture.mailbox("frank", "maildir", 10),
        fixture.mailbox("gina", "mbox", 1 << 20),
    };
    ipc::Frame reply = run_request(encode_request(request));
    auto results = decode_reply(reply, request.targets.size());
    REQUIRE(results.ok());

    auto expect = [&](size_t i, Outcome outcome, std::string dsn, std::string reason_start) {
        CAPTURE(i, (*results)[i].reason);
        CHECK((*results)[i].outcome == outcome);
        CHECK((*results)[i].dsn == dsn);
        CHECK((*results)[i].reason.rfind(reason_start, 0) == 0);
    };
    expect(0, Outcome::sent, "2.0.0", "delivered to maildir");
    expect(1, Outcome::sent, "2.0.0", "delivered to mailbox");
    expect(2, Outcome::sent, "2.0.0", "delivered to maildir");
    expect(3, Outcome::sent, "2.0.0", "delivered to maildir");
    expect(4, Outcome::bounced, "5.4.6", "mail forwarding loop");
    expect(5, Outcome::deferred, "4.2.2", "mailbox full");
    expect(6, Outcome::sent, "2.0.0", "delivered to mailbox");

    // Maildir: trace fields first, forged Return-Path gone, CRLF -> LF,
    // everything else (Status is not special in a Maildir) unchanged.
    std::string body = "Delivered-To: loop@example.test\nSubject: test\nStatus: RO\n\nHello\nFrom the body\n.dot\n";
    auto bob = files_in(fixture.maildir("bob") + "/new");
    REQUIRE(bob.size() == 1);
    std::string expected_bob = "Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n" + body;
    CHECK(read_file(bob[0]) == expected_bob);
    CHECK(store::size_from_name(bob[0].substr(bob[0].rfind('/') + 1)) == expected_bob.size());
    CHECK(bob[0].find(".mx.example.test,S=") != std::string::npos);

    // mbox: From_ line, mbox-only fields gone, From-quoting, empty line.
    std::string carol = read_file(fixture.mail + "/example.test/carol/mbox");
    REQUIRE(carol.rfind("From alice@example.test ", 0) == 0);
    std::string after_from = carol.substr(carol.find('\n') + 1);
    CHECK(after_from ==
          "Return-Path: <alice@example.test>\nDelivered-To: carol@example.test\nDelivered-To: loop@example.test\n"
          "Subject: test\n\nHello\n>From the body\n.dot\n\n");

    // A folder that does not exist means INBOX; one that exists is used.
    CHECK(files_in(fixture.maildir("dave") + "/new").size() == 1);
    CHECK(files_in(fixture.maildir("erin") + "/new").empty());
    CHECK(files_in(fixture.maildir("erin") + "/.Lists/new").size() == 1);
    // Nothing for the looping or over-quota recipients.
    CHECK(files_in(fixture.maildir("loop") + "/new").empty());
    CHECK(files_in(fixture.maildir("frank") + "/new").empty());
}

TEST_CASE("over quota bounces when quota_exceeded_permanent is set") {
    Fixture fixture;
    Request request = fixture.queue_message(kMessage);
    request.targets = {fixture.mailbox("frank", "mbox", 10)};
    deliverd::AgentSettings settings;
    settings.quota_exceeded_permanent = true;
    auto results = decode_reply(run_request(encode_request(request), settings), 1);
    REQUIRE(results.ok());
    CHECK((*results)[0].outcome == Outcome::bounced);
    CHECK((*results)[0].dsn == "5.2.2");
}

TEST_CASE("the null sender is written <> and MAILER-DAEMON") {
    Fixture fixture;
    Request request = fixture.queue_message("Subject: bounce\r\n\r\nx\r\n", "");
    request.targets = {fixture.mailbox("bob"), fixture.mailbox("carol", "mbox")};
    auto results = decode_reply(run_request(encode_request(request)), 2);
    REQUIRE(results.ok());
    auto bob = files_in(fixture.maildir("bob") + "/new");
    REQUIRE(bob.size() == 1);
    CHECK(read_file(bob[0]) == "Return-Path: <>\nDelivered-To: bob@example.test\nSubject: bounce\n\nx\n");
    CHECK(read_file(fixture.mail + "/example.test/carol/mbox").rfind("From MAILER-DAEMON ", 0) == 0);
}

TEST_CASE("a multi-MiB message streams through with CRLF split across chunks") {
    Fixture fixture;
    // 7-byte lines: some CRLF straddles every 1 MiB record boundary.
    std::string body;
    for (int i = 0; i < 500000; ++i) body += "abcde\r\n";
    Request request = fixture.queue_message("Subject: big\r\n\r\n" + body);
    request.targets = {fixture.mailbox("bob"), fixture.mailbox("carol", "mbox")};
    auto results = decode_reply(run_request(encode_request(request)), 2);
    REQUIRE(results.ok());
    CHECK((*results)[0].outcome == Outcome::sent);
    CHECK((*results)[1].outcome == Outcome::sent);
    std::string expected = "Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\nSubject: big\n\n" +
                           replace_all(body, "\r\n", "\n");
    auto bob = files_in(fixture.maildir("bob") + "/new");
    REQUIRE(bob.size() == 1);
    CHECK(read_file(bob[0]) == expected);
}

TEST_CASE("pipe targets: refused as root, run as an unprivileged user") {
    Fixture fixture;
    Request request = fixture.queue_message(kMessage);
    Target pipe;
    pipe.recipient = "list@example.test";
    pipe.kind = Kind::pipe;
    pipe.command = "/bin/sh -c 'exit 0'";
    pipe.alias = "list@example.test";
    request.targets = {pipe};
    auto results = decode_reply(run_request(encode_request(request)), 1);
    REQUIRE(results.ok());
    if (geteuid() == 0) {
        CHECK((*results)[0].outcome == Outcome::deferred);
        CHECK((*results)[0].dsn == "4.3.0");
        CHECK((*results)[0].reason.find("root") != std::string::npos);
    } else {
        CHECK((*results)[0].outcome == Outcome::sent);
        CHECK((*results)[0].reason == "delivered to command: /bin/sh -c 'exit 0'");
    }
}

TEST_CASE("bad requests and missing queue files get an error reply") {
    Fixture fixture;
    SECTION("undecodable request") {
        ipc::Frame frame;
        frame.add("op", "deliver");
        ipc::Frame reply = run_request(frame);
        CHECK(reply.get("status") == "error");
        CHECK_FALSE(decode_reply(reply, 0).ok());
    }
    SECTION("queue file missing") {
        Request request = fixture.queue_message(kMessage);
        REQUIRE(unlink(request.queue_file.c_str()) == 0);
        request.targets = {fixture.mailbox("bob")};
        ipc::Frame reply = run_request(encode_request(request));
        CHECK(reply.get("status") == "error");
        CHECK(std::string(reply.get("error").value_or("")).find("cannot open queue file") != std::string::npos);
        CHECK(files_in(fixture.maildir("bob") + "/new").empty());
    }
    SECTION("queue file holding another message") {
        Request request = fixture.queue_message(kMessage);
        request.queue_id = queue::new_queue_id();
        request.targets = {fixture.mailbox("bob")};
        ipc::Frame reply = run_request(encode_request(request));
        CHECK(reply.get("status") == "error");
    }
    SECTION("corrupt queue file") {
        Request request = fixture.queue_message(kMessage);
        REQUIRE(truncate(request.queue_file.c_str(), 20) == 0);
        request.targets = {fixture.mailbox("bob")};
        ipc::Frame reply = run_request(encode_request(request));
        CHECK(reply.get("status") == "error");
    }
}

TEST_CASE("peers are checked by uid") {
    std::set<uid_t> allowed{0, 1000};
    CHECK(deliverd::peer_allowed({1, 0, 0}, allowed));
    CHECK(deliverd::peer_allowed({1, 1000, 5}, allowed));
    CHECK_FALSE(deliverd::peer_allowed({1, 1001, 0}, allowed));
}
