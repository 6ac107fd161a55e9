// authd's lookup-socket protocol: both sides' encoders and decoders, and the
// asynchronous client against a real ipc::Server on a temporary socket.
#include "libmail/auth_lookup.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

using namespace facteur;
using namespace facteur::auth_lookup;

namespace {

// Re-encodes through the wire format so every test also covers encode/decode.
ipc::Frame over_the_wire(const ipc::Frame& frame) {
    std::string bytes = ipc::encode(frame);
    ipc::Frame out;
    size_t consumed = 0;
    std::string error;
    REQUIRE(ipc::decode(bytes, out, consumed, error) == ipc::DecodeStatus::complete);
    REQUIRE(consumed == bytes.size());
    return out;
}

UserInfo alice() {
    UserInfo user;
    user.address = "alice@example.test";
    user.mail_path = "/var/lib/facteur/mail/example.test/alice";
    user.format = "maildir";
    user.quota_bytes = 1048576;
    user.enabled = true;
    return user;
}

}  // namespace

TEST_CASE("verify requests round-trip") {
    VerifyRequest request;
    request.user = "Alice@Example.TEST";
    request.password = "pa\tss\nword\0x";
    request.service = "imap";
    request.client_ip = "192.0.2.7";
    ipc::Frame frame = over_the_wire(request::verify(request));
    REQUIRE(serve::op(frame).ok());
    CHECK(*serve::op(frame) == Op::verify);
    auto decoded = serve::verify(frame);
    REQUIRE(decoded.ok());
    CHECK(decoded->user == request.user);
    CHECK(decoded->password == request.password);
    CHECK(decoded->service == "imap");
    CHECK(decoded->client_ip == "192.0.2.7");
}

TEST_CASE("apop requests round-trip") {
    ApopRequest request{"bob@example.test", "<1896.697170952@dbc.mtview.ca.us>",
                        "c4c9334bac560ecc979e58001b3e22fb", "pop3", "::1"};
    ipc::Frame frame = over_the_wire(request::apop(request));
    CHECK(*serve::op(frame) == Op::apop);
    auto decoded = serve::apop(frame);
    REQUIRE(decoded.ok());
    CHECK(decoded->user == request.user);
    CHECK(decoded->timestamp == request.timestamp);
    CHECK(decoded->digest == request.digest);
    CHECK(decoded->client_ip == "::1");
}

TEST_CASE("user and resolve requests round-trip") {
    ipc::Frame user = over_the_wire(request::find_user("alice@example.test"));
    CHECK(*serve::op(user) == Op::user);
    CHECK(*serve::user(user) == "alice@example.test");
    ipc::Frame resolve = over_the_wire(request::resolve("team@example.test"));
    CHECK(*serve::op(resolve) == Op::resolve);
    CHECK(*serve::address(resolve) == "team@example.test");
}

TEST_CASE("malformed requests are refused with a reason") {
    ipc::Frame no_op;
    no_op.add("user", "x");
    CHECK_FALSE(serve::op(no_op).ok());
    ipc::Frame unknown;
    unknown.add("op", "drop_tables");
    CHECK_FALSE(serve::op(unknown).ok());

    ipc::Frame no_password;
    no_password.add("op", "verify").add("user", "alice@example.test");
    auto verify = serve::verify(no_password);
    REQUIRE_FALSE(verify.ok());
    CHECK(verify.error().find("password") != std::string::npos);

    ipc::Frame empty_user;
    empty_user.add("op", "user").add("user", "");
    CHECK_FALSE(serve::user(empty_user).ok());

    ipc::Frame huge;
    huge.add("op", "resolve").add("address", std::string(100000, 'a'));
    CHECK_FALSE(serve::address(huge).ok());

    ipc::Frame apop;
    apop.add("op", "apop").add("user", "bob@example.test").add("timestamp", "<1@x>");
    CHECK_FALSE(serve::apop(apop).ok());
}

TEST_CASE("verify replies round-trip for every outcome") {
    auto outcome = GENERATE(Outcome::ok, Outcome::fail, Outcome::tempfail);
    VerifyReply reply{outcome, "alice@example.test", outcome == Outcome::ok ? "" : "Authentication failed"};
    auto decoded = reply::verify(over_the_wire(serve::verify_reply(reply)));
    REQUIRE(decoded.ok());
    CHECK(decoded->result == outcome);
    CHECK(decoded->user == "alice@example.test");
    CHECK(decoded->reason == reply.reason);
}

TEST_CASE("a verify reply that is an error or says ok without a user is an error") {
    CHECK_FALSE(reply::verify(serve::error_reply("missing attribute password")).ok());
    ipc::Frame ok;
    ok.add("result", "ok");
    CHECK_FALSE(reply::verify(ok).ok());
    CHECK_FALSE(reply::verify(ipc::Frame{}).ok());
}

TEST_CASE("user replies round-trip; APOP secrets only when given") {
    UserInfo user = alice();
    auto decoded = reply::find_user(over_the_wire(serve::user_reply(user)));
    REQUIRE(decoded.ok());
    REQUIRE(decoded->has_value());
    CHECK((*decoded)->address == "alice@example.test");
    CHECK((*decoded)->mail_path == user.mail_path);
    CHECK((*decoded)->format == "maildir");
    CHECK((*decoded)->quota_bytes == 1048576);
    CHECK((*decoded)->enabled);
    CHECK_FALSE((*decoded)->apop_secret);

    user.apop_secret = "tanstaaf";
    user.enabled = false;
    user.format = "mbox";
    decoded = reply::find_user(over_the_wire(serve::user_reply(user)));
    REQUIRE(decoded.ok());
    CHECK((*decoded)->apop_secret == std::optional<std::string>("tanstaaf"));
    CHECK_FALSE((*decoded)->enabled);
    CHECK((*decoded)->format == "mbox");

    auto missing = reply::find_user(over_the_wire(serve::user_reply(std::nullopt)));
    REQUIRE(missing.ok());
    CHECK_FALSE(missing->has_value());
}

TEST_CASE("user replies with broken fields are errors") {
    auto [name, value] = GENERATE(table<std::string, std::string>({
        {"quota", "12x"},
        {"quota", "-1"},
        {"quota", ""},
        {"enabled", "maybe"},
        {"format", "mh"},
    }));
    CAPTURE(name, value);
    ipc::Frame frame;
    frame.add("result", "ok");
    UserInfo user = alice();
    for (auto [field, original] : std::initializer_list<std::pair<std::string, std::string>>{
             {"address", user.address}, {"mail_path", user.mail_path}, {"format", user.format},
             {"quota", "0"}, {"enabled", "yes"}})
        frame.add(field, field == name ? value : original);
    CHECK_FALSE(reply::find_user(frame).ok());
}

TEST_CASE("tempfail and error replies become errors naming the reason") {
    auto temp = reply::find_user(serve::tempfail_reply("database is locked"));
    REQUIRE_FALSE(temp.ok());
    CHECK(temp.error().find("database is locked") != std::string::npos);
    auto refused = reply::resolve(serve::error_reply("no @ in address"));
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().find("no @ in address") != std::string::npos);
}

TEST_CASE("resolutions round-trip") {
    Resolution local;
    local.kind = RecipientKind::local_user;
    local.user = alice();
    auto decoded = reply::resolve(over_the_wire(serve::resolve_reply(local)));
    REQUIRE(decoded.ok());
    CHECK(decoded->kind == RecipientKind::local_user);
    REQUIRE(decoded->user);
    CHECK(decoded->user->mail_path == "/var/lib/facteur/mail/example.test/alice");

    Resolution alias;
    alias.kind = RecipientKind::alias;
    alias.targets = {"bob@example.test", "|/usr/bin/vacation bob", "/var/log/copy", "carol@elsewhere.test"};
    decoded = reply::resolve(over_the_wire(serve::resolve_reply(alias)));
    REQUIRE(decoded.ok());
    CHECK(decoded->kind == RecipientKind::alias);
    CHECK(decoded->targets == alias.targets);

    for (auto kind : {RecipientKind::unknown_local, RecipientKind::remote}) {
        Resolution other;
        other.kind = kind;
        decoded = reply::resolve(over_the_wire(serve::resolve_reply(other)));
        REQUIRE(decoded.ok());
        CHECK(decoded->kind == kind);
        CHECK(decoded->targets.empty());
        CHECK_FALSE(decoded->user);
    }

    ipc::Frame bogus;
    bogus.add("result", "ok").add("kind", "elsewhere");
    CHECK_FALSE(reply::resolve(bogus).ok());
    ipc::Frame empty_alias;
    empty_alias.add("result", "ok").add("kind", "alias");
    CHECK_FALSE(reply::resolve(empty_alias).ok());
}

TEST_CASE("mail_path and user_info follow the mail store layout") {
    directory::User user;
    user.localpart = "alice";
    user.domain = "example.test";
    user.apop_secret = "secret";
    user.quota_bytes = 5;
    CHECK(mail_path("/srv/mail", user) == "/srv/mail/example.test/alice");
    CHECK_FALSE(user_info(user, "/srv/mail", false).apop_secret);
    CHECK(user_info(user, "/srv/mail", true).apop_secret == std::optional<std::string>("secret"));
    CHECK(user_info(user, "/srv/mail", true).quota_bytes == 5);
}

TEST_CASE("the async client talks to an ipc::Server speaking the protocol") {
    char pattern[] = "/tmp/facteur-auth-lookup-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    std::string dir = pattern;
    std::string path = dir + "/lookup";
    {
        facteur::event::Loop loop;
        auto listening = facteur::event::listen_unix(path, 0600);
        REQUIRE(listening.ok());
        ipc::Server server(loop, std::move(listening).value(),
                           [](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                               auto op = serve::op(request);
                               if (!op) return respond(serve::error_reply(op.error()));
                               if (*op == Op::verify) {
                                   auto verify = serve::verify(request);
                                   if (!verify) return respond(serve::error_reply(verify.error()));
                                   bool good = verify->password == "right";
                                   return respond(serve::verify_reply(
                                       {good ? Outcome::ok : Outcome::fail, "alice@example.test",
                                        good ? "" : "Authentication failed"}));
                               }
                               if (*op == Op::user) return respond(serve::user_reply(alice()));
                               Resolution resolution;
                               resolution.kind = RecipientKind::remote;
                               return respond(serve::resolve_reply(resolution));
                           });
        Client client(loop, path, std::chrono::seconds(5));
        int answers = 0;
        VerifyRequest good;
        good.user = "alice@example.test";
        good.password = "right";
        client.verify(good, [&](Result<VerifyReply> reply) {
            REQUIRE(reply.ok());
            CHECK(reply->result == Outcome::ok);
            ++answers;
        });
        VerifyRequest bad = good;
        bad.password = "wrong";
        client.verify(bad, [&](Result<VerifyReply> reply) {
            REQUIRE(reply.ok());
            CHECK(reply->result == Outcome::fail);
            CHECK(reply->reason == "Authentication failed");
            ++answers;
        });
        client.find_user("alice@example.test", [&](Result<std::optional<UserInfo>> reply) {
            REQUIRE(reply.ok());
            REQUIRE(reply->has_value());
            CHECK((*reply)->format == "maildir");
            ++answers;
        });
        client.resolve("bob@elsewhere.test", [&](Result<Resolution> reply) {
            REQUIRE(reply.ok());
            CHECK(reply->kind == RecipientKind::remote);
            ++answers;
        });
        // APOP is unknown to this toy server's verify branch: it answers as
        // a resolution, which the client must refuse, not misread.
        client.verify_apop({"bob@example.test", "<1@x>", "00", "pop3", ""}, [&](Result<VerifyReply> reply) {
            CHECK_FALSE(reply.ok());
            ++answers;
            loop.stop();
        });
        facteur::event::Timer guard(loop, [&] { loop.stop(); });
        guard.start(std::chrono::seconds(10));
        loop.run();
        CHECK(answers == 5);
    }
    {
        // No authd listening: an error, never a success.
        facteur::event::Loop loop;
        Client client(loop, dir + "/absent", std::chrono::seconds(2));
        bool answered = false;
        VerifyRequest request;
        request.user = "alice@example.test";
        request.password = "x";
        client.verify(request, [&](Result<VerifyReply> reply) {
            CHECK_FALSE(reply.ok());
            answered = true;
            loop.stop();
        });
        facteur::event::Timer guard(loop, [&] { loop.stop(); });
        guard.start(std::chrono::seconds(10));
        loop.run();
        CHECK(answered);
    }
    std::filesystem::remove_all(dir);
}
