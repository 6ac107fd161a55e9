// qmgr's control protocol: requests, replies and nested frames round-trip,
// and every malformed reply or request is an error, never a guess.
#include <catch2/catch.hpp>

#include "libmail/ipc.hpp"
#include "libmail/queue_control.hpp"

using namespace facteur;
using namespace facteur::queue_control;

namespace {

const std::string kId = "1J0TP8I412G00NJF00";
const std::string kOtherId = "1J0TP8I412G00NJF01";

MessageInfo sample_message() {
    MessageInfo message;
    message.id = kId;
    message.folder = "deferred";
    message.size = 1234;
    message.arrival = 1795426539;
    message.sender = "alice@example.org";
    message.recipients.push_back({"bob@example.net", "deferred", "4.4.1", "connect to mx.example.net: refused"});
    // Binary-safe: a hostile reason cannot forge a field.
    message.recipients.push_back({"carol@example.org", "sent", "2.0.0", std::string("line\r\nstate: bounced\0x", 22)});
    message.next_attempt = 1795426839;
    return message;
}

ipc::Frame nested(std::initializer_list<std::pair<std::string, std::string>> attributes) {
    ipc::Frame frame;
    for (const auto& [name, value] : attributes) frame.add(name, value);
    return frame;
}

std::string recipient_bytes(const std::string& state = "pending") {
    return ipc::encode(nested({{"address", "a@b.example"}, {"state", state}, {"dsn", ""}, {"reason", ""}}));
}

}  // namespace

TEST_CASE("op names match the wire and parse back", "[queue_control]") {
    for (Op op : {Op::wakeup, Op::list, Op::show, Op::flush, Op::hold, Op::release, Op::remove, Op::requeue}) {
        auto parsed = parse_op(op_name(op));
        REQUIRE(parsed);
        CHECK(*parsed == op);
    }
    CHECK(op_name(Op::remove) == "delete");
    CHECK_FALSE(parse_op("remove"));
    CHECK_FALSE(parse_op("LIST"));
    CHECK_FALSE(is_mutating(Op::list));
    CHECK_FALSE(is_mutating(Op::show));
    CHECK_FALSE(is_mutating(Op::wakeup));
    CHECK(is_mutating(Op::flush));
    CHECK(is_mutating(Op::remove));
}

TEST_CASE("a message frame round-trips byte for byte", "[queue_control]") {
    MessageInfo message = sample_message();
    auto decoded = decode_message(encode_message(message));
    REQUIRE(decoded);
    CHECK(decoded->id == message.id);
    CHECK(decoded->folder == "deferred");
    CHECK(decoded->size == 1234);
    CHECK(decoded->arrival == message.arrival);
    CHECK(decoded->sender == message.sender);
    CHECK(decoded->next_attempt == message.next_attempt);
    REQUIRE(decoded->recipients.size() == 2);
    CHECK(decoded->recipients[0].address == "bob@example.net");
    CHECK(decoded->recipients[0].state == "deferred");
    CHECK(decoded->recipients[0].dsn == "4.4.1");
    CHECK(decoded->recipients[1].reason == message.recipients[1].reason);
}

TEST_CASE("list, show and count replies round-trip", "[queue_control]") {
    Listing listing;
    listing.messages.push_back(sample_message());
    MessageInfo second = sample_message();
    second.id = kOtherId;
    second.folder = "hold";
    second.sender = "";  // a bounce
    second.recipients.clear();
    listing.messages.push_back(second);
    listing.truncated = 7;

    auto list = decode_list_reply(list_reply(listing));
    REQUIRE(list);
    REQUIRE(list->messages.size() == 2);
    CHECK(list->messages[1].id == kOtherId);
    CHECK(list->messages[1].sender.empty());
    CHECK(list->messages[1].recipients.empty());
    CHECK(list->truncated == 7);

    auto empty = decode_list_reply(list_reply(Listing{}));
    REQUIRE(empty);
    CHECK(empty->messages.empty());
    CHECK(empty->truncated == 0);

    auto shown = decode_show_reply(show_reply(sample_message(), "Subject: hi\r\n\r\n"));
    REQUIRE(shown);
    CHECK(shown->first.id == kId);
    CHECK(shown->second == "Subject: hi\r\n\r\n");

    auto count = decode_count_reply(count_reply(42));
    REQUIRE(count);
    CHECK(*count == 42);
}

TEST_CASE("show replies cap the header section", "[queue_control]") {
    std::string huge(kMaxHeaders + 100, 'x');
    auto shown = decode_show_reply(show_reply(sample_message(), huge));
    REQUIRE(shown);
    CHECK(shown->second.size() == kMaxHeaders);
}

TEST_CASE("an error reply carries qmgr's reason", "[queue_control]") {
    ipc::Frame reply = ipc::error_reply("no message 1J0TP8I412G00NJF00 in the queue");
    auto list = decode_list_reply(reply);
    REQUIRE_FALSE(list);
    CHECK(list.error() == "no message 1J0TP8I412G00NJF00 in the queue");
    CHECK_FALSE(decode_show_reply(reply));
    auto count = decode_count_reply(reply);
    REQUIRE_FALSE(count);
    CHECK(count.error().find("no message") != std::string::npos);
    CHECK_FALSE(decode_count_reply(ipc::Frame{}));  // no status at all
}

TEST_CASE("malformed message frames are refused", "[queue_control]") {
    auto base = [](std::vector<std::pair<std::string, std::string>> changes, std::vector<std::string> drop = {}) {
        std::vector<std::pair<std::string, std::string>> attributes{
            {"id", kId},   {"folder", "active"}, {"size", "10"},        {"arrival", "100"},
            {"sender", ""}, {"recipient", recipient_bytes()}, {"next_attempt", "0"}};
        for (auto& [name, value] : changes) {
            bool replaced = false;
            for (auto& attribute : attributes)
                if (attribute.first == name) {
                    attribute.second = value;
                    replaced = true;
                }
            if (!replaced) attributes.emplace_back(name, value);
        }
        ipc::Frame frame;
        for (auto& [name, value] : attributes)
            if (std::find(drop.begin(), drop.end(), name) == drop.end()) frame.add(name, value);
        return ipc::encode(frame);
    };
    REQUIRE(decode_message(base({})));

    struct Case {
        const char* what;
        std::string bytes;
    };
    std::string good = base({});
    std::vector<Case> cases{
        {"empty", ""},
        {"truncated", good.substr(0, good.size() - 1)},
        {"stray bytes after the frame", good + "x"},
        {"not a frame", "hello world"},
        {"bad queue id", base({{"id", "not-an-id"}})},
        {"unknown folder", base({{"folder", "tmp"}})},
        {"size not a number", base({{"size", "12k"}})},
        {"size negative", base({{"size", "-1"}})},
        {"size empty", base({{"size", ""}})},
        {"arrival negative", base({{"arrival", "-5"}})},
        {"next_attempt junk", base({{"next_attempt", "soon"}})},
        {"unknown attribute", base({{"colour", "blue"}})},
        {"missing id", base({}, {"id"})},
        {"missing sender", base({}, {"sender"})},
        {"missing next_attempt", base({}, {"next_attempt"})},
        {"repeated folder", base({}) + ""},
        {"recipient not a frame", base({{"recipient", "garbage"}})},
        {"recipient with unknown state", base({{"recipient", recipient_bytes("lost")}})},
        {"recipient missing reason",
         base({{"recipient", ipc::encode(nested({{"address", "a@b"}, {"state", "sent"}, {"dsn", ""}}))}})},
        {"recipient with extra attribute",
         base({{"recipient", ipc::encode(nested({{"address", "a@b"}, {"state", "sent"}, {"dsn", ""}, {"reason", ""},
                                                 {"x", "y"}}))}})},
    };
    // A repeated single-valued attribute.
    ipc::Frame repeated;
    repeated.add("id", kId).add("folder", "active").add("folder", "hold").add("size", "1").add("arrival", "1");
    repeated.add("sender", "").add("next_attempt", "0");
    cases[15].bytes = ipc::encode(repeated);

    for (const Case& c : cases) {
        INFO(c.what);
        CHECK_FALSE(decode_message(c.bytes));
    }
}

TEST_CASE("malformed list and count replies are refused", "[queue_control]") {
    ipc::Frame no_truncated = ipc::ok_reply();
    no_truncated.add("message", encode_message(sample_message()));
    CHECK_FALSE(decode_list_reply(no_truncated));

    ipc::Frame bad_message = ipc::ok_reply();
    bad_message.add("message", "junk").add("truncated", "0");
    CHECK_FALSE(decode_list_reply(bad_message));

    ipc::Frame unknown = ipc::ok_reply();
    unknown.add("truncated", "0").add("extra", "1");
    CHECK_FALSE(decode_list_reply(unknown));

    ipc::Frame twice = ipc::ok_reply();
    twice.add("truncated", "0").add("truncated", "1");
    CHECK_FALSE(decode_list_reply(twice));

    auto count_with = [](std::string value) {
        ipc::Frame frame = ipc::ok_reply();
        frame.add("count", std::move(value));
        return decode_count_reply(frame);
    };
    CHECK(count_with("0"));
    CHECK_FALSE(count_with(""));
    CHECK_FALSE(count_with("-1"));
    CHECK_FALSE(count_with("3 "));
    CHECK_FALSE(count_with("99999999999999999999999"));
    CHECK_FALSE(decode_count_reply(ipc::ok_reply()));

    ipc::Frame show_without_headers = ipc::ok_reply();
    show_without_headers.add("message", encode_message(sample_message()));
    CHECK_FALSE(decode_show_reply(show_without_headers));
}

TEST_CASE("requests are built and checked", "[queue_control]") {
    ipc::Frame hold = request(Op::hold, kId);
    CHECK(hold.get("op") == std::optional<std::string_view>("hold"));
    CHECK(hold.get("id") == std::optional<std::string_view>(kId));
    CHECK_FALSE(request(Op::list).get("id"));

    struct Case {
        std::vector<std::pair<std::string, std::string>> attributes;
        bool ok;
        Op op;
        std::string id;
    };
    auto [attributes, ok, op, id] = GENERATE(table<std::vector<std::pair<std::string, std::string>>, bool, Op, std::string>({
        {{{"op", "wakeup"}}, true, Op::wakeup, ""},
        {{{"op", "list"}}, true, Op::list, ""},
        {{{"op", "flush"}}, true, Op::flush, ""},
        {{{"op", "show"}, {"id", kId}}, true, Op::show, kId},
        {{{"op", "hold"}, {"id", "all"}}, true, Op::hold, "all"},
        {{{"op", "release"}, {"id", kId}}, true, Op::release, kId},
        {{{"op", "delete"}, {"id", "all"}}, true, Op::remove, "all"},
        {{{"op", "requeue"}, {"id", kId}}, true, Op::requeue, kId},
        {{}, false, Op::wakeup, ""},
        {{{"op", "explode"}}, false, Op::wakeup, ""},
        {{{"op", "list"}, {"op", "list"}}, false, Op::wakeup, ""},
        {{{"op", "list"}, {"id", kId}}, false, Op::wakeup, ""},
        {{{"op", "show"}}, false, Op::wakeup, ""},
        {{{"op", "show"}, {"id", "all"}}, false, Op::wakeup, ""},
        {{{"op", "hold"}}, false, Op::wakeup, ""},
        {{{"op", "hold"}, {"id", "../etc/passwd"}}, false, Op::wakeup, ""},
        {{{"op", "delete"}, {"id", "ALL"}}, false, Op::wakeup, ""},
        {{{"op", "hold"}, {"id", kId}, {"id", kOtherId}}, false, Op::wakeup, ""},
        {{{"op", "list"}, {"verbose", "1"}}, false, Op::wakeup, ""},
    }));
    ipc::Frame frame;
    for (const auto& [name, value] : attributes) frame.add(name, value);
    auto decoded = decode_request(frame);
    INFO(ipc::encode(frame).size());
    REQUIRE(decoded.ok() == ok);
    if (ok) {
        CHECK(decoded->op == op);
        CHECK(decoded->id == id);
        // What the client builds is what the server accepts.
        auto again = decode_request(request(op, id));
        REQUIRE(again);
        CHECK(again->op == op);
    } else {
        CHECK_FALSE(decoded.error().empty());
    }
}

TEST_CASE("call reports an absent qmgr as not running", "[queue_control]") {
    std::string path = "/nonexistent-facteur-test/qmgr";
    CHECK(not_running(path));
    auto reply = call(path, request(Op::list), std::chrono::milliseconds(500));
    REQUIRE_FALSE(reply);
    CHECK(reply.error().rfind("qmgr is not running (", 0) == 0);
}

TEST_CASE("flush for one domain (ETRN, queue flush DOMAIN) is built and checked", "[queue_control]") {
    auto exact = decode_request(flush_request("Remote.TEST", false));
    REQUIRE(exact);
    CHECK(exact->op == Op::flush);
    CHECK(exact->domain == "remote.test");
    CHECK_FALSE(exact->subdomains);
    CHECK_FALSE(flush_request("remote.test", false).get("subdomains"));
    auto below = decode_request(flush_request("remote.test", true));
    REQUIRE(below);
    CHECK(below->subdomains);
    auto all = decode_request(request(Op::flush));
    REQUIRE(all);
    CHECK(all->domain.empty());

    using Attributes = std::vector<std::pair<std::string, std::string>>;
    auto attributes = GENERATE(Attributes{{"op", "flush"}, {"domain", ""}},
                               Attributes{{"op", "flush"}, {"domain", "a..test"}},
                               Attributes{{"op", "flush"}, {"domain", "@remote.test"}},
                               Attributes{{"op", "flush"}, {"domain", "remote.test\r\nx"}},
                               Attributes{{"op", "flush"}, {"domain", std::string(256, 'a')}},
                               Attributes{{"op", "flush"}, {"domain", "a.test"}, {"domain", "b.test"}},
                               Attributes{{"op", "flush"}, {"subdomains", "yes"}},
                               Attributes{{"op", "flush"}, {"domain", "a.test"}, {"subdomains", "maybe"}},
                               Attributes{{"op", "list"}, {"domain", "a.test"}},
                               Attributes{{"op", "hold"}, {"id", "all"}, {"domain", "a.test"}});
    ipc::Frame frame;
    for (const auto& [name, value] : attributes) frame.add(name, value);
    CHECK_FALSE(decode_request(frame).ok());
}

TEST_CASE("which recipients a domain flush covers", "[queue_control]") {
    CHECK(address_in_domain("bob@remote.test", "remote.test", false));
    CHECK(address_in_domain("bob@REMOTE.test", "remote.test", false));
    CHECK(address_in_domain("\"a@b\"@remote.test", "remote.test", false));
    CHECK_FALSE(address_in_domain("bob@mx.remote.test", "remote.test", false));
    CHECK(address_in_domain("bob@mx.remote.test", "remote.test", true));
    CHECK(address_in_domain("bob@remote.test", "remote.test", true));
    CHECK_FALSE(address_in_domain("bob@notremote.test", "remote.test", true));
    CHECK_FALSE(address_in_domain("bob", "remote.test", true));
    CHECK_FALSE(address_in_domain("bob@remote.test", "", true));
    CHECK(valid_flush_domain("a-b_c.example"));
    CHECK_FALSE(valid_flush_domain(".example"));
    CHECK_FALSE(valid_flush_domain("#queue"));
}
