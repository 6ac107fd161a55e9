// qmgr <-> deliverd frames: round trips, and refusal of every malformed field.
#include <catch2/catch.hpp>

#include <functional>

#include "libmail/delivery_protocol.hpp"
#include "libmail/queue.hpp"

using namespace facteur;
using namespace facteur::delivery;

namespace {

Request sample_request() {
    Request request;
    request.queue_id = queue::new_queue_id();
    request.queue_file = "/var/spool/facteur/active/" + request.queue_id;
    request.sender = "alice@example.test";
    Target mailbox;
    mailbox.recipient = "bob+lists@example.test";
    mailbox.kind = Kind::mailbox;
    mailbox.user = "bob@example.test";
    mailbox.mail_path = "/var/lib/facteur/mail/example.test/bob";
    mailbox.format = "mbox";
    mailbox.folder = "Lists";
    mailbox.quota_bytes = 1ull << 40;
    Target pipe;
    pipe.recipient = "list@example.test";
    pipe.kind = Kind::pipe;
    pipe.command = "/usr/bin/archive --to \"a b\" ; rm -rf /";
    pipe.alias = "list@example.test";
    request.targets = {mailbox, pipe};
    return request;
}

// Rebuilds a request frame with one delivery attribute edited.
ipc::Frame with_target_edit(const std::function<void(ipc::Frame&)>& edit) {
    ipc::Frame frame = encode_request(sample_request());
    for (auto& [name, value] : frame.attributes) {
        if (name != "delivery") continue;
        ipc::Frame nested;
        size_t consumed = 0;
        std::string error;
        REQUIRE(ipc::decode(value, nested, consumed, error) == ipc::DecodeStatus::complete);
        edit(nested);
        value = ipc::encode(nested);
        break;  // the first (mailbox) delivery only
    }
    return frame;
}

void set(ipc::Frame& frame, const std::string& name, const std::string& value) {
    for (auto& [key, existing] : frame.attributes)
        if (key == name) {
            existing = value;
            return;
        }
    frame.add(name, value);
}

void remove(ipc::Frame& frame, const std::string& name) {
    std::erase_if(frame.attributes, [&](const auto& attribute) { return attribute.first == name; });
}

}  // namespace

TEST_CASE("a delivery request survives encode and decode") {
    Request request = sample_request();
    auto decoded = decode_request(encode_request(request));
    REQUIRE(decoded.ok());
    CHECK(decoded->queue_id == request.queue_id);
    CHECK(decoded->queue_file == request.queue_file);
    CHECK(decoded->sender == request.sender);
    REQUIRE(decoded->targets.size() == 2);
    const Target& mailbox = decoded->targets[0];
    CHECK(mailbox.recipient == "bob+lists@example.test");
    CHECK(mailbox.kind == Kind::mailbox);
    CHECK(mailbox.user == "bob@example.test");
    CHECK(mailbox.mail_path == "/var/lib/facteur/mail/example.test/bob");
    CHECK(mailbox.format == "mbox");
    CHECK(mailbox.folder == "Lists");
    CHECK(mailbox.quota_bytes == 1ull << 40);
    const Target& pipe = decoded->targets[1];
    CHECK(pipe.kind == Kind::pipe);
    CHECK(pipe.command == request.targets[1].command);
    CHECK(pipe.alias == "list@example.test");
}

TEST_CASE("the null sender is allowed") {
    Request request = sample_request();
    request.sender = "";
    auto decoded = decode_request(encode_request(request));
    REQUIRE(decoded.ok());
    CHECK(decoded->sender.empty());
}

TEST_CASE("malformed top-level fields are refused") {
    using Edit = std::function<void(ipc::Frame&)>;
    auto [what, edit] = GENERATE(table<std::string, Edit>({
        {"no op", [](ipc::Frame& f) { remove(f, "op"); }},
        {"other op", [](ipc::Frame& f) { set(f, "op", "expunge"); }},
        {"no queue id", [](ipc::Frame& f) { remove(f, "queue_id"); }},
        {"bad queue id", [](ipc::Frame& f) { set(f, "queue_id", "../../etc/passwd"); }},
        {"relative queue file", [](ipc::Frame& f) { set(f, "queue_file", "active/X"); }},
        {"dot-dot queue file", [](ipc::Frame& f) { set(f, "queue_file", "/var/spool/../../etc/shadow"); }},
        {"no sender", [](ipc::Frame& f) { remove(f, "sender"); }},
        {"CRLF in sender", [](ipc::Frame& f) { set(f, "sender", "a@b\r\nX-Forged: 1"); }},
        {"no deliveries", [](ipc::Frame& f) { remove(f, "delivery"); }},
        {"garbage delivery", [](ipc::Frame& f) { f.add("delivery", "garbage"); }},
        {"truncated delivery", [](ipc::Frame& f) {
             for (auto& [name, value] : f.attributes)
                 if (name == "delivery") value.pop_back();
         }},
    }));
    CAPTURE(what);
    ipc::Frame frame = encode_request(sample_request());
    edit(frame);
    auto decoded = decode_request(frame);
    CHECK_FALSE(decoded.ok());
}

TEST_CASE("malformed delivery fields are refused") {
    using Edit = std::function<void(ipc::Frame&)>;
    auto [what, edit] = GENERATE(table<std::string, Edit>({
        {"no recipient", [](ipc::Frame& f) { remove(f, "recipient"); }},
        {"empty recipient", [](ipc::Frame& f) { set(f, "recipient", ""); }},
        {"LF in recipient", [](ipc::Frame& f) { set(f, "recipient", "bob@x\nDelivered-To: y"); }},
        {"NUL in recipient", [](ipc::Frame& f) { set(f, "recipient", std::string("bob\0@x", 6)); }},
        {"unknown kind", [](ipc::Frame& f) { set(f, "kind", "file"); }},
        {"no user", [](ipc::Frame& f) { remove(f, "user"); }},
        {"relative mail path", [](ipc::Frame& f) { set(f, "mail_path", "mail/bob"); }},
        {"dot-dot mail path", [](ipc::Frame& f) { set(f, "mail_path", "/mail/../root"); }},
        {"dot mail path", [](ipc::Frame& f) { set(f, "mail_path", "/mail/./bob"); }},
        {"unknown format", [](ipc::Frame& f) { set(f, "format", "mh"); }},
        {"no format", [](ipc::Frame& f) { remove(f, "format"); }},
        {"quota not decimal", [](ipc::Frame& f) { set(f, "quota", "12a"); }},
        {"negative quota", [](ipc::Frame& f) { set(f, "quota", "-1"); }},
        {"quota overflow", [](ipc::Frame& f) { set(f, "quota", "18446744073709551616"); }},
        {"empty quota", [](ipc::Frame& f) { set(f, "quota", ""); }},
        {"folder with slash", [](ipc::Frame& f) { set(f, "folder", "../../x"); }},
        {"pipe without command", [](ipc::Frame& f) {
             set(f, "kind", "pipe");
             remove(f, "command");
         }},
        {"pipe command with LF", [](ipc::Frame& f) {
             set(f, "kind", "pipe");
             set(f, "command", "/bin/true\n/bin/false");
         }},
    }));
    CAPTURE(what);
    auto decoded = decode_request(with_target_edit(edit));
    CHECK_FALSE(decoded.ok());
}

TEST_CASE("the largest quota is accepted") {
    auto decoded = decode_request(with_target_edit([](ipc::Frame& f) { set(f, "quota", "18446744073709551615"); }));
    REQUIRE(decoded.ok());
    CHECK(decoded->targets[0].quota_bytes == UINT64_MAX);
}

TEST_CASE("a reply survives encode and decode, in order") {
    std::vector<TargetResult> results = {
        {Outcome::sent, "2.0.0", "delivered to maildir"},
        {Outcome::deferred, "4.2.2", "mailbox full"},
        {Outcome::bounced, "5.4.6", "mail forwarding loop for bob@example.test"},
    };
    auto decoded = decode_reply(encode_reply(results), 3);
    REQUIRE(decoded.ok());
    REQUIRE(decoded->size() == 3);
    for (size_t i = 0; i < 3; ++i) {
        CHECK((*decoded)[i].outcome == results[i].outcome);
        CHECK((*decoded)[i].dsn == results[i].dsn);
        CHECK((*decoded)[i].reason == results[i].reason);
    }
    CHECK(outcome_name(Outcome::deferred) == "deferred");
}

TEST_CASE("malformed replies are refused") {
    std::vector<TargetResult> one = {{Outcome::sent, "2.0.0", "ok"}};
    CHECK_FALSE(decode_reply(encode_reply(one), 2).ok());  // count mismatch
    CHECK_FALSE(decode_reply(ipc::error_reply("cannot open queue file"), 1).ok());
    CHECK(decode_reply(ipc::error_reply("cannot open queue file"), 1).error() == "cannot open queue file");
    CHECK_FALSE(decode_reply(encode_reply({{Outcome::sent, "4.2.2", "x"}}), 1).ok());   // class mismatch
    CHECK_FALSE(decode_reply(encode_reply({{Outcome::bounced, "5.2", "x"}}), 1).ok());   // not x.y.z
    CHECK_FALSE(decode_reply(encode_reply({{Outcome::deferred, "4.2.2222", "x"}}), 1).ok());
    ipc::Frame bad_outcome = ipc::ok_reply();
    ipc::Frame nested;
    nested.add("outcome", "maybe").add("dsn", "2.0.0").add("reason", "");
    bad_outcome.add("result", ipc::encode(nested));
    CHECK_FALSE(decode_reply(bad_outcome, 1).ok());
    ipc::Frame garbage = ipc::ok_reply();
    garbage.add("result", "not a frame");
    CHECK_FALSE(decode_reply(garbage, 1).ok());
}
