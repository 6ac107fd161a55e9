// directory_admin: every op encoded by the remote side, passed through the
// ipc wire format, served against a real database, and decoded back.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "libmail/directory.hpp"
#include "libmail/directory_admin.hpp"
#include "libmail/ipc.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

using namespace facteur;
namespace admin = facteur::directory_admin;

namespace {

constexpr const char* kHash = "$y$j9T$abcdefghijklmnopqrstu.$0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh";
constexpr const char* kOtherHash = "$y$j9T$zyxwvutsrqponmlkjihgf.$hgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA9876543210";

struct TempDir {
    std::string path;
    TempDir() {
        char pattern[] = "/tmp/test_directory_admin.XXXXXX";
        const char* made = mkdtemp(pattern);
        if (made == nullptr) FAIL("mkdtemp failed");
        path = made;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
};

// Sends a request through the wire format both ways, as authd would see it.
ipc::Frame over_the_wire(const ipc::Frame& frame) {
    std::string bytes = ipc::encode(frame);
    ipc::Frame decoded;
    size_t consumed = 0;
    std::string error;
    REQUIRE(ipc::decode(bytes, decoded, consumed, error) == ipc::DecodeStatus::complete);
    REQUIRE(consumed == bytes.size());
    return decoded;
}

ipc::Frame serve(directory::UserDatabase& database, const ipc::Frame& request) {
    return over_the_wire(admin::serve(database, over_the_wire(request)));
}

struct Fixture {
    TempDir dir;
    directory::UserDatabase database;
    Fixture() : database(open(dir.path + "/users.sqlite")) {}
    static directory::UserDatabase open(const std::string& path) {
        auto opened = directory::UserDatabase::open(path, true);
        if (!opened) FAIL(opened.error());
        return std::move(opened).value();
    }
    Status call(const ipc::Frame& request) { return admin::reply::status(serve(database, request)); }
};

}  // namespace

TEST_CASE("domain ops round trip through serve()", "[directory_admin]") {
    Fixture f;
    REQUIRE(f.call(admin::request::add_domain("example.test")));
    REQUIRE(f.call(admin::request::add_domain("Other.Test")));

    auto domains = admin::reply::domains(serve(f.database, admin::request::list_domains()));
    REQUIRE(domains);
    CHECK(*domains == std::vector<std::string>{"example.test", "other.test"});

    // Errors are carried back with the database's message.
    Status duplicate = f.call(admin::request::add_domain("example.test"));
    REQUIRE_FALSE(duplicate);
    CHECK(duplicate.error().find("example.test") != std::string::npos);

    // delete without force refuses while users exist; with force it goes.
    REQUIRE(f.call(admin::request::add_user("bob@example.test", kHash, {})));
    Status refused = f.call(admin::request::delete_domain("example.test", false));
    REQUIRE_FALSE(refused);
    CHECK_FALSE(refused.error().empty());
    REQUIRE(f.call(admin::request::delete_domain("example.test", true)));
    REQUIRE(f.call(admin::request::delete_domain("other.test", false)));
    domains = admin::reply::domains(serve(f.database, admin::request::list_domains()));
    REQUIRE(domains);
    CHECK(domains->empty());
    CHECK_FALSE(f.call(admin::request::delete_domain("missing.test", false)));
}

TEST_CASE("user ops round trip through serve()", "[directory_admin]") {
    Fixture f;
    REQUIRE(f.call(admin::request::add_domain("example.test")));
    REQUIRE(f.call(admin::request::add_domain("other.test")));

    directory::UserOptions options;
    options.quota_bytes = uint64_t{1} << 30;
    options.mailbox_format = "mbox";
    options.enabled = false;
    options.apop_secret = "apop-secret";
    REQUIRE(f.call(admin::request::add_user("Alice@Example.test", kHash, options)));
    REQUIRE(f.call(admin::request::add_user("bob@example.test", kHash, {})));
    REQUIRE(f.call(admin::request::add_user("carol@other.test", kHash, {})));

    Status duplicate = f.call(admin::request::add_user("bob@example.test", kHash, {}));
    REQUIRE_FALSE(duplicate);
    CHECK(duplicate.error().find("already exists") != std::string::npos);
    CHECK_FALSE(f.call(admin::request::add_user("dave@nowhere.test", kHash, {})));

    auto alice = f.database.find_user("alice@example.test");
    REQUIRE(alice);
    REQUIRE(alice->has_value());
    CHECK((*alice)->password_hash == kHash);
    CHECK((*alice)->mailbox_format == "mbox");
    CHECK((*alice)->quota_bytes == uint64_t{1} << 30);
    CHECK_FALSE((*alice)->enabled);
    CHECK((*alice)->apop_secret == std::optional<std::string>("apop-secret"));

    auto users = admin::reply::users(serve(f.database, admin::request::list_users(std::nullopt)));
    REQUIRE(users);
    REQUIRE(users->size() == 3);
    auto only_example = admin::reply::users(serve(f.database, admin::request::list_users("example.test")));
    REQUIRE(only_example);
    REQUIRE(only_example->size() == 2);
    bool seen_alice = false;
    for (const auto& user : *only_example) {
        CHECK(user.address.ends_with("@example.test"));
        if (user.address == "alice@example.test") {
            seen_alice = true;
            CHECK(user.mailbox_format == "mbox");
            CHECK(user.quota_bytes == uint64_t{1} << 30);
            CHECK_FALSE(user.enabled);
        } else {
            CHECK(user.mailbox_format == "maildir");
            CHECK(user.quota_bytes == 0);
            CHECK(user.enabled);
        }
    }
    CHECK(seen_alice);

    REQUIRE(f.call(admin::request::set_password("alice@example.test", kOtherHash)));
    REQUIRE(f.call(admin::request::set_enabled("alice@example.test", true)));
    REQUIRE(f.call(admin::request::set_quota("alice@example.test", 12345)));
    alice = f.database.find_user("alice@example.test");
    REQUIRE(alice);
    REQUIRE(alice->has_value());
    CHECK((*alice)->password_hash == kOtherHash);
    CHECK((*alice)->enabled);
    CHECK((*alice)->quota_bytes == 12345);

    CHECK_FALSE(f.call(admin::request::set_password("nobody@example.test", kOtherHash)));
    CHECK_FALSE(f.call(admin::request::set_enabled("nobody@example.test", true)));
    CHECK_FALSE(f.call(admin::request::set_quota("nobody@example.test", 1)));

    REQUIRE(f.call(admin::request::delete_user("bob@example.test")));
    CHECK_FALSE(f.call(admin::request::delete_user("bob@example.test")));
    users = admin::reply::users(serve(f.database, admin::request::list_users(std::nullopt)));
    REQUIRE(users);
    CHECK(users->size() == 2);
}

TEST_CASE("user_apop sets and clears the APOP secret through serve()", "[directory_admin]") {
    Fixture f;
    REQUIRE(f.call(admin::request::add_domain("example.test")));
    REQUIRE(f.call(admin::request::add_user("bob@example.test", kHash, {})));
    auto apop_of = [&](const char* address) {
        auto user = f.database.find_user(address);
        REQUIRE(user);
        REQUIRE(user->has_value());
        return (*user)->apop_secret;
    };

    // The request: op, address, and the secret only when one is set.
    ipc::Frame set = admin::request::set_apop_secret("bob@example.test", std::string_view("tanstaaf"));
    CHECK(set.get("op") == std::optional<std::string_view>("user_apop"));
    CHECK(set.get("address") == std::optional<std::string_view>("bob@example.test"));
    CHECK(set.get("apop_secret") == std::optional<std::string_view>("tanstaaf"));
    ipc::Frame clear = admin::request::set_apop_secret("bob@example.test", std::nullopt);
    CHECK_FALSE(clear.get("apop_secret").has_value());

    REQUIRE(f.call(set));
    CHECK(apop_of("bob@example.test") == std::optional<std::string>("tanstaaf"));
    REQUIRE(f.call(admin::request::set_apop_secret("BOB@example.test", std::string_view("another one"))));
    CHECK(apop_of("bob@example.test") == std::optional<std::string>("another one"));
    CHECK(f.database.find_user("bob@example.test")->value().password_hash == kHash);
    REQUIRE(f.call(clear));
    CHECK_FALSE(apop_of("bob@example.test").has_value());
    REQUIRE(f.call(clear));  // clearing twice is not an error

    Status unknown = f.call(admin::request::set_apop_secret("nobody@example.test", std::string_view("x")));
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error() == "user nobody@example.test does not exist");
    CHECK_FALSE(f.call(admin::request::set_apop_secret("nobody@example.test", std::nullopt)));

    REQUIRE(f.call(set));
    auto bad = GENERATE(std::string(""), std::string("line\nfeed"), std::string("nul\0byte", 8),
                        std::string("esc\x1b[0m"), std::string(257, 's'));
    Status refused = f.call(admin::request::set_apop_secret("bob@example.test", std::string_view(bad)));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("APOP secret") != std::string::npos);
    CHECK(apop_of("bob@example.test") == std::optional<std::string>("tanstaaf"));

    // Raw frames: the address is required; absent apop_secret means clear.
    ipc::Frame reply = serve(f.database, ipc::Frame{}.add("op", "user_apop"));
    CHECK(reply.get("status") == std::optional<std::string_view>("error"));
    CHECK(reply.get("error") == std::optional<std::string_view>("missing attribute address"));
    REQUIRE(f.call(ipc::Frame{}.add("op", "user_apop").add("address", "bob@example.test")));
    CHECK_FALSE(apop_of("bob@example.test").has_value());

    // The local backend says the same.
    auto local = admin::local(f.database);
    REQUIRE(local->set_apop_secret("bob@example.test", std::string_view("local")));
    CHECK(apop_of("bob@example.test") == std::optional<std::string>("local"));
    CHECK_FALSE(local->set_apop_secret("bob@example.test", std::string_view("bad\x01")));
    CHECK_FALSE(local->set_apop_secret("nobody@example.test", std::nullopt));
    REQUIRE(local->set_apop_secret("bob@example.test", std::nullopt));
    CHECK_FALSE(apop_of("bob@example.test").has_value());
}

TEST_CASE("password hashes are checked before they are stored", "[directory_admin]") {
    Fixture f;
    REQUIRE(f.call(admin::request::add_domain("example.test")));
    auto bad = GENERATE(std::string(""), std::string("has space"), std::string("line\nfeed"),
                        std::string("nul\0byte", 8), std::string(600, 'x'));
    CHECK_FALSE(f.call(admin::request::add_user("bob@example.test", bad, {})));
    REQUIRE(f.call(admin::request::add_user("carol@example.test", kHash, {})));
    CHECK_FALSE(f.call(admin::request::set_password("carol@example.test", bad)));
}

TEST_CASE("alias ops round trip through serve()", "[directory_admin]") {
    Fixture f;
    REQUIRE(f.call(admin::request::add_domain("example.test")));
    REQUIRE(f.call(admin::request::add_alias("team@example.test", "alice@example.test")));
    REQUIRE(f.call(admin::request::add_alias("team@example.test", "bob@elsewhere.test")));
    REQUIRE(f.call(admin::request::add_alias("log@example.test", "|/usr/bin/logger -t mail")));
    CHECK_FALSE(f.call(admin::request::add_alias("x@nowhere.test", "alice@example.test")));

    auto aliases = admin::reply::aliases(serve(f.database, admin::request::list_aliases()));
    REQUIRE(aliases);
    REQUIRE(aliases->size() == 2);
    for (const auto& [address, targets] : *aliases) {
        if (address == "team@example.test") {
            CHECK(targets.size() == 2);
        } else {
            CHECK(address == "log@example.test");
            CHECK(targets == std::vector<std::string>{"|/usr/bin/logger -t mail"});
        }
    }

    REQUIRE(f.call(admin::request::delete_alias("team@example.test", "bob@elsewhere.test")));
    aliases = admin::reply::aliases(serve(f.database, admin::request::list_aliases()));
    REQUIRE(aliases);
    for (const auto& [address, targets] : *aliases)
        if (address == "team@example.test") CHECK(targets == std::vector<std::string>{"alice@example.test"});
    REQUIRE(f.call(admin::request::delete_alias("log@example.test", std::nullopt)));
    REQUIRE(f.call(admin::request::delete_alias("team@example.test", std::nullopt)));
    aliases = admin::reply::aliases(serve(f.database, admin::request::list_aliases()));
    REQUIRE(aliases);
    CHECK(aliases->empty());
}

TEST_CASE("bad requests get an error reply, never a crash", "[directory_admin]") {
    Fixture f;
    auto error_of = [&](const ipc::Frame& request) {
        ipc::Frame reply = serve(f.database, request);
        CHECK(reply.get("status") == std::optional<std::string_view>("error"));
        Status status = admin::reply::status(reply);
        REQUIRE_FALSE(status);
        return status.error();
    };
    CHECK(error_of(ipc::Frame{}) == "missing attribute op");
    CHECK(error_of(ipc::Frame{}.add("op", "drop_tables")).find("unknown op") != std::string::npos);
    CHECK(error_of(ipc::Frame{}.add("op", "domain_add")) == "missing attribute domain");
    CHECK(error_of(ipc::Frame{}.add("op", "user_add").add("address", "a@b.test")) ==
          "missing attribute password_hash");
    CHECK(error_of(ipc::Frame{}.add("op", "domain_del").add("domain", "x.test").add("force", "yes"))
              .find("force") != std::string::npos);
    CHECK(error_of(ipc::Frame{}.add("op", "user_quota").add("address", "a@b.test").add("quota", "1G"))
              .find("quota") != std::string::npos);
    CHECK(error_of(ipc::Frame{}.add("op", "user_quota").add("address", "a@b.test").add("quota", "99999999999999999999"))
              .find("quota") != std::string::npos);
    CHECK(error_of(ipc::Frame{}.add("op", "user_enable").add("address", "a@b.test")) == "missing attribute enabled");
    // Hostile bytes in values travel intact and are refused by validation.
    CHECK_FALSE(error_of(admin::request::add_domain(std::string("evil\r\n\0.test", 13))).empty());
}

TEST_CASE("reply decoders reject malformed replies", "[directory_admin]") {
    CHECK_FALSE(admin::reply::status(ipc::Frame{}));
    CHECK_FALSE(admin::reply::status(ipc::Frame{}.add("status", "maybe")));
    Status carried = admin::reply::status(ipc::Frame{}.add("status", "error").add("error", "disk full"));
    REQUIRE_FALSE(carried);
    CHECK(carried.error() == "disk full");

    ipc::Frame truncated;
    truncated.add("status", "ok").add("address", "a@b.test").add("format", "maildir");
    CHECK_FALSE(admin::reply::users(truncated));
    ipc::Frame out_of_order;
    out_of_order.add("status", "ok").add("format", "maildir").add("address", "a@b.test");
    CHECK_FALSE(admin::reply::users(out_of_order));
    ipc::Frame bad_quota;
    bad_quota.add("status", "ok").add("address", "a@b.test").add("format", "maildir").add("quota", "-1").add(
        "enabled", "1");
    CHECK_FALSE(admin::reply::users(bad_quota));
    CHECK_FALSE(admin::reply::aliases(ipc::Frame{}.add("status", "ok").add("target", "orphan@b.test")));
    CHECK_FALSE(admin::reply::domains(ipc::Frame{}.add("status", "error").add("error", "nope")));
}

TEST_CASE("local() and remote() give the same answers", "[directory_admin]") {
    Fixture f;
    std::string socket_path = f.dir.path + "/admin.sock";

    // A one-connection-per-call server standing in for authd.
    UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listener);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(socket_path.size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
    REQUIRE(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener.get(), 8) == 0);

    constexpr int kCalls = 8;
    std::thread server([&] {
        for (int i = 0; i < kCalls; ++i) {
            UniqueFd client(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!client) return;
            std::string buffer;
            ipc::Frame request;
            for (;;) {
                char chunk[4096];
                ssize_t n = read(client.get(), chunk, sizeof chunk);
                if (n <= 0) return;
                buffer.append(chunk, static_cast<size_t>(n));
                size_t consumed = 0;
                std::string error;
                auto state = ipc::decode(buffer, request, consumed, error);
                if (state == ipc::DecodeStatus::error) return;
                if (state == ipc::DecodeStatus::complete) break;
            }
            std::string reply = ipc::encode(admin::serve(f.database, request));
            if (write(client.get(), reply.data(), reply.size()) != static_cast<ssize_t>(reply.size())) return;
        }
    });

    auto remote = admin::remote(socket_path);
    Status added = remote->add_domain("example.test");
    Status user = remote->add_user("bob@example.test", kHash, {});
    Status duplicate = remote->add_user("bob@example.test", kHash, {});
    auto remote_users = remote->list_users(std::nullopt);
    Status alias = remote->add_alias("team@example.test", "bob@example.test");
    Status apop_set = remote->set_apop_secret("bob@example.test", std::string_view("remote-apop"));
    auto bob_after_set = f.database.find_user("bob@example.test");
    Status apop_unknown = remote->set_apop_secret("nobody@example.test", std::string_view("x"));
    Status apop_clear = remote->set_apop_secret("bob@example.test", std::nullopt);
    server.join();

    CHECK(apop_set);
    REQUIRE(bob_after_set);
    REQUIRE(bob_after_set->has_value());
    CHECK((*bob_after_set)->apop_secret == std::optional<std::string>("remote-apop"));
    REQUIRE_FALSE(apop_unknown);
    CHECK(apop_unknown.error() == "user nobody@example.test does not exist");
    CHECK(apop_clear);
    CHECK_FALSE(f.database.find_user("bob@example.test")->value().apop_secret.has_value());

    CHECK(added);
    CHECK(user);
    REQUIRE_FALSE(duplicate);
    CHECK(duplicate.error().find("already exists") != std::string::npos);
    CHECK(alias);

    auto local = admin::local(f.database);
    auto local_users = local->list_users(std::nullopt);
    REQUIRE(remote_users);
    REQUIRE(local_users);
    REQUIRE(remote_users->size() == 1);
    REQUIRE(local_users->size() == 1);
    CHECK(remote_users->front().address == local_users->front().address);
    CHECK(local->list_aliases()->size() == 1);

    // Nobody listening any more: a clear error, not a hang.
    listener.reset();
    std::filesystem::remove(socket_path);
    Status unreachable = remote->add_domain("other.test");
    REQUIRE_FALSE(unreachable);
    CHECK(unreachable.error().find("authd") != std::string::npos);
}

TEST_CASE("open_local_database creates its directory and a 0600 file", "[directory_admin]") {
    TempDir dir;
    std::string path = dir.path + "/auth/users.sqlite";
    {
        auto database = admin::open_local_database(path, system::current_account().name);
        REQUIRE(database);
        REQUIRE(database->add_domain("example.test"));
    }
    struct stat info {};
    REQUIRE(stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    REQUIRE(stat((dir.path + "/auth").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0700);

    auto reopened = admin::open_local_database(path, system::current_account().name);
    REQUIRE(reopened);
    auto domains = reopened->list_domains();
    REQUIRE(domains);
    CHECK(*domains == std::vector<std::string>{"example.test"});
}
