// Tests for libmail/directory: the user database (domains, users, aliases),
// address resolution with alias expansion, and the aliases(5) file parser.
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/unit/test_support.hpp"
#include "libmail/directory.hpp"

using namespace facteur;
using test::TempDir;
using directory::Resolution;
using directory::UserDatabase;
using directory::UserOptions;

namespace {

UserDatabase create_database(const TempDir& dir) {
    auto database = UserDatabase::open(dir.file("users.sqlite"), true);
    INFO((database ? std::string() : database.error()));
    REQUIRE(database.ok());
    return std::move(*database);
}

#define REQUIRE_OK(expression)                                        \
    do {                                                              \
        auto status_ = (expression);                                  \
        INFO(#expression << ": " << (status_ ? "" : status_.error())); \
        REQUIRE(status_.ok());                                        \
    } while (false)

#define REQUIRE_ERROR(expression, text)                      \
    do {                                                     \
        auto status_ = (expression);                         \
        REQUIRE_FALSE(status_.ok());                         \
        CHECK_THAT(status_.error(), Catch::Contains(text));  \
    } while (false)

using Targets = std::vector<std::string>;

Targets alias_targets(UserDatabase& database, const std::string& address) {
    auto resolution = database.resolve(address);
    INFO(address << ": " << (resolution ? "" : resolution.error()));
    REQUIRE(resolution.ok());
    REQUIRE(resolution->kind == Resolution::alias);
    return resolution->targets;
}

Resolution::Kind kind_of(UserDatabase& database, const std::string& address) {
    auto resolution = database.resolve(address);
    INFO(address << ": " << (resolution ? "" : resolution.error()));
    REQUIRE(resolution.ok());
    return resolution->kind;
}

}  // namespace

// ---- syntax ----

TEST_CASE("domain names are checked", "[directory]") {
    auto [domain, valid] = GENERATE(table<std::string, bool>({
        {"example.test", true},
        {"EXAMPLE.Test", true},
        {"localhost", true},
        {"a-b.c0.example", true},
        {"123.example", true},
        {"", false},
        {"example..test", false},
        {".example.test", false},
        {"example.test.", false},
        {"-example.test", false},
        {"example-.test", false},
        {"exa mple.test", false},
        {"exa_mple.test", false},
        {"example.test\n", false},
        {"ex@mple.test", false},
        {std::string(63, 'a') + ".test", true},
        {std::string(64, 'a') + ".test", false},
    }));
    INFO(domain);
    CHECK(directory::check_domain_name(domain).ok() == valid);
}

TEST_CASE("a domain longer than 253 characters is refused", "[directory]") {
    std::string label(49, 'a');
    std::string domain = label + "." + label + "." + label + "." + label + "." + label + ".test";  // 255
    REQUIRE(domain.size() > 253);
    REQUIRE_ERROR(directory::check_domain_name(domain), "longer than 253");
    std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                          std::string(61, 'd');
    REQUIRE(longest.size() == 253);
    CHECK(directory::check_domain_name(longest).ok());
}

TEST_CASE("local parts and addresses are checked", "[directory]") {
    auto [address, valid] = GENERATE(table<std::string, bool>({
        {"bob@example.test", true},
        {"Bob.Smith+tag@Example.TEST", true},
        {"b@x", true},
        {"bob", false},
        {"@example.test", false},
        {"bob@", false},
        {"bo b@example.test", false},
        {"bob\t@example.test", false},
        {"bo\rb@example.test", false},
        {std::string("bo\0b@example.test", 17), false},
        {"bob@bob@example.test", false},
        {std::string(64, 'x') + "@example.test", true},
        {std::string(65, 'x') + "@example.test", false},
    }));
    INFO(address);
    CHECK(directory::split_address(address).ok() == valid);
}

TEST_CASE("split_address lowercases and names the problem", "[directory]") {
    auto split = directory::split_address("Bob.Smith@Example.TEST");
    REQUIRE(split.ok());
    CHECK(split->localpart == "bob.smith");
    CHECK(split->domain == "example.test");
    REQUIRE_ERROR(directory::split_address("bob"), "expected local@domain");
    REQUIRE_ERROR(directory::split_address("a@b@example.test"), "'@' is not allowed");
    REQUIRE_ERROR(directory::split_address("@example.test"), "local part is empty");
    REQUIRE_ERROR(directory::split_address("bob@exa mple.test"), "only letters, digits, hyphens");
    // Untrusted bytes are escaped in the message.
    auto bad = directory::split_address("bo\nb@example.test");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().find('\n') == std::string::npos);
}

TEST_CASE("alias targets are classified", "[directory]") {
    using directory::TargetKind;
    CHECK(*directory::classify_target("bob@example.test") == TargetKind::address);
    CHECK(*directory::classify_target("|/usr/bin/procmail -a x") == TargetKind::pipe);
    CHECK(*directory::classify_target("/var/mail/archive") == TargetKind::file);
    REQUIRE_ERROR(directory::classify_target(""), "empty");
    REQUIRE_ERROR(directory::classify_target("bob"), "expected an address, |command or /file");
    REQUIRE_ERROR(directory::classify_target("|  "), "empty command");
    REQUIRE_ERROR(directory::classify_target("|/bin/sh\nrm -rf /"), "control characters");
    REQUIRE_ERROR(directory::classify_target("bob@exa_mple.test"), "invalid address");
}

// ---- open / schema ----

TEST_CASE("open creates the file with mode 0600 and a versioned schema", "[directory]") {
    TempDir dir;
    mode_t old_umask = umask(0);  // a permissive umask must not leak into the file mode
    auto database = UserDatabase::open(dir.file("users.sqlite"), true);
    umask(old_umask);
    REQUIRE(database.ok());
    struct stat info {};
    REQUIRE(stat(dir.file("users.sqlite").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);

    REQUIRE_OK(database->add_domain("example.test"));
    if (stat(dir.file("users.sqlite-wal").c_str(), &info) == 0) CHECK((info.st_mode & 0777) == 0600);

    auto version = database->database().prepare("PRAGMA user_version");
    REQUIRE(version.ok());
    REQUIRE(*version->step());
    CHECK(version->column_int64(0) == directory::schema_version);
}

TEST_CASE("open refuses what it cannot or should not use", "[directory]") {
    TempDir dir;
    REQUIRE_ERROR(UserDatabase::open(dir.file("missing.sqlite"), false), "does not exist");
    REQUIRE_ERROR(UserDatabase::open(dir.file("no/such/dir/users.sqlite"), true), "directory");
    REQUIRE_ERROR(UserDatabase::open("", true), "empty");

    SECTION("a database of some other program") {
        {
            auto other = sqlite::Database::open(dir.file("other.sqlite"), sqlite::Mode::read_write_create);
            REQUIRE(other.ok());
            REQUIRE(other->exec("CREATE TABLE something (x)").ok());
        }
        REQUIRE_ERROR(UserDatabase::open(dir.file("other.sqlite"), true), "not a facteur user database");
    }
    SECTION("a schema from a newer facteur") {
        {
            auto database = create_database(dir);
            REQUIRE(database.database().exec("PRAGMA user_version = 99").ok());
        }
        REQUIRE_ERROR(UserDatabase::open(dir.file("users.sqlite"), false), "schema version 99 is newer");
    }
}

TEST_CASE("reopening keeps the data", "[directory]") {
    TempDir dir;
    {
        auto database = create_database(dir);
        REQUIRE_OK(database.add_domain("example.test"));
        UserOptions options;
        options.apop_secret = "apop";
        options.quota_bytes = 1000;
        REQUIRE_OK(database.add_user("bob@example.test", "$y$hash", options));
        REQUIRE_OK(database.add_alias("info@example.test", "bob@example.test"));
    }
    for (bool create : {false, true}) {
        auto database = UserDatabase::open(dir.file("users.sqlite"), create);
        REQUIRE(database.ok());
        CHECK(*database->list_domains() == std::vector<std::string>{"example.test"});
        auto bob = database->find_user("bob@example.test");
        REQUIRE(bob.ok());
        REQUIRE(bob->has_value());
        CHECK((*bob)->password_hash == "$y$hash");
        CHECK((*bob)->apop_secret == "apop");
        CHECK((*bob)->quota_bytes == 1000);
        CHECK(alias_targets(*database, "info@example.test") == Targets{"bob@example.test"});
    }
}

// ---- domains ----

TEST_CASE("domains: add, list, is_local, errors", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("Example.TEST"));
    REQUIRE_OK(database.add_domain("b.example"));
    REQUIRE_ERROR(database.add_domain("example.test"), "domain example.test already exists");
    REQUIRE_ERROR(database.add_domain("bad domain"), "invalid domain");
    CHECK(*database.list_domains() == std::vector<std::string>{"b.example", "example.test"});
    CHECK(*database.is_local_domain("EXAMPLE.test"));
    CHECK_FALSE(*database.is_local_domain("elsewhere.test"));
    REQUIRE_ERROR(database.is_local_domain("no..dots"), "empty label");
    REQUIRE_ERROR(database.delete_domain("nowhere.test", false), "domain nowhere.test does not exist");
}

TEST_CASE("delete_domain refuses while it has users or aliases, unless forced", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_domain("other.test"));
    REQUIRE_OK(database.add_domain("sub.example.test"));
    REQUIRE_OK(database.add_user("bob@example.test", "h", {}));
    REQUIRE_OK(database.add_user("carol@other.test", "h", {}));
    REQUIRE_OK(database.add_alias("info@example.test", "bob@example.test"));
    REQUIRE_OK(database.add_alias("list@other.test", "carol@other.test"));
    REQUIRE_OK(database.add_alias("x@sub.example.test", "bob@example.test"));

    REQUIRE_ERROR(database.delete_domain("example.test", false),
                  "domain example.test still has 1 user and 1 alias (use force");
    CHECK(database.find_user("bob@example.test")->has_value());

    SECTION("an empty domain goes without force") {
        REQUIRE_OK(database.delete_alias("x@sub.example.test", std::nullopt));
        REQUIRE_OK(database.delete_domain("Sub.Example.Test", false));
        CHECK(database.list_domains()->size() == 2);
    }
    SECTION("force deletes its users and aliases, and nothing else") {
        REQUIRE_OK(database.delete_domain("EXAMPLE.TEST", true));
        CHECK(*database.list_domains() == std::vector<std::string>{"other.test", "sub.example.test"});
        CHECK_FALSE(database.find_user("bob@example.test")->has_value());
        CHECK(database.find_user("carol@other.test")->has_value());
        auto aliases = database.list_aliases();
        REQUIRE(aliases->size() == 2);
        CHECK((*aliases)[0].first == "list@other.test");
        CHECK((*aliases)[1].first == "x@sub.example.test");
        CHECK(kind_of(database, "bob@example.test") == Resolution::remote);
    }
    SECTION("aliases alone also block it") {
        REQUIRE_OK(database.delete_user("carol@other.test"));
        REQUIRE_ERROR(database.delete_domain("other.test", false), "0 users and 1 alias");
    }
}

// ---- users ----

TEST_CASE("users: add, find, list, update, delete", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_domain("b.example"));

    UserOptions mbox;
    mbox.mailbox_format = "mbox";
    mbox.quota_bytes = 50 * 1024 * 1024;
    mbox.apop_secret = "tanstaaf";
    mbox.enabled = false;
    REQUIRE_OK(database.add_user("Bob@Example.TEST", "$y$j9T$bob", {}));
    REQUIRE_OK(database.add_user("alice@example.test", "$y$j9T$alice", mbox));
    REQUIRE_OK(database.add_user("zed@b.example", "h", {}));

    REQUIRE_ERROR(database.add_user("bob@example.test", "x", {}), "user bob@example.test already exists");
    REQUIRE_ERROR(database.add_user("BOB@example.test", "x", {}), "user bob@example.test already exists");
    REQUIRE_ERROR(database.add_user("bob@nowhere.test", "x", {}), "domain nowhere.test does not exist");
    REQUIRE_ERROR(database.add_user("bob", "x", {}), "expected local@domain");
    REQUIRE_ERROR(database.add_user("new@example.test", "", {}), "password hash is empty");
    REQUIRE_ERROR(database.add_user("new@example.test", "a\nb", {}), "control character");
    UserOptions bad_format;
    bad_format.mailbox_format = "mh";
    REQUIRE_ERROR(database.add_user("new@example.test", "x", bad_format), "mailbox format mh is not maildir or mbox");
    UserOptions huge;
    huge.quota_bytes = UINT64_MAX;
    REQUIRE_ERROR(database.add_user("new@example.test", "x", huge), "too large");
    UserOptions empty_secret;
    empty_secret.apop_secret = "";
    REQUIRE_ERROR(database.add_user("new@example.test", "x", empty_secret), "APOP secret is empty");

    auto bob = database.find_user("BOB@example.TEST");
    REQUIRE(bob.ok());
    REQUIRE(bob->has_value());
    CHECK((*bob)->localpart == "bob");
    CHECK((*bob)->domain == "example.test");
    CHECK((*bob)->address() == "bob@example.test");
    CHECK((*bob)->password_hash == "$y$j9T$bob");
    CHECK_FALSE((*bob)->apop_secret.has_value());
    CHECK((*bob)->quota_bytes == 0);
    CHECK((*bob)->mailbox_format == "maildir");
    CHECK((*bob)->enabled);
    CHECK((*bob)->id > 0);

    auto alice = database.find_user("alice@example.test");
    REQUIRE(alice->has_value());
    CHECK((*alice)->mailbox_format == "mbox");
    CHECK((*alice)->quota_bytes == 50 * 1024 * 1024);
    CHECK((*alice)->apop_secret == "tanstaaf");
    CHECK_FALSE((*alice)->enabled);

    CHECK_FALSE(database.find_user("nobody@example.test")->has_value());
    REQUIRE_ERROR(database.find_user("not an address"), "invalid address");

    auto all = database.list_users(std::nullopt);
    REQUIRE(all.ok());
    REQUIRE(all->size() == 3);
    CHECK((*all)[0].address() == "zed@b.example");
    CHECK((*all)[1].address() == "alice@example.test");
    CHECK((*all)[2].address() == "bob@example.test");
    auto in_domain = database.list_users(std::string_view("EXAMPLE.test"));
    REQUIRE(in_domain.ok());
    CHECK(in_domain->size() == 2);
    REQUIRE_ERROR(database.list_users(std::string_view("nowhere.test")), "domain nowhere.test does not exist");

    REQUIRE_OK(database.set_password("bob@example.test", "$y$new"));
    REQUIRE_OK(database.set_quota("BOB@example.test", 1234));
    REQUIRE_OK(database.set_enabled("bob@example.test", false));
    bob = database.find_user("bob@example.test");
    CHECK((*bob)->password_hash == "$y$new");
    CHECK((*bob)->quota_bytes == 1234);
    CHECK_FALSE((*bob)->enabled);
    REQUIRE_OK(database.set_enabled("bob@example.test", true));
    CHECK((*database.find_user("bob@example.test"))->enabled);

    REQUIRE_ERROR(database.set_password("nobody@example.test", "h"), "user nobody@example.test does not exist");
    REQUIRE_ERROR(database.set_password("bob@example.test", ""), "password hash is empty");
    REQUIRE_ERROR(database.set_quota("nobody@example.test", 1), "user nobody@example.test does not exist");
    REQUIRE_ERROR(database.set_quota("bob@example.test", UINT64_MAX), "too large");
    REQUIRE_ERROR(database.set_enabled("nobody@example.test", true), "user nobody@example.test does not exist");

    REQUIRE_OK(database.delete_user("Bob@example.test"));
    CHECK_FALSE(database.find_user("bob@example.test")->has_value());
    REQUIRE_ERROR(database.delete_user("bob@example.test"), "user bob@example.test does not exist");
}

TEST_CASE("users: the APOP secret is set, replaced, cleared and checked", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_user("bob@example.test", "$y$j9T$bob", {}));
    REQUIRE_OK(database.add_user("carol@example.test", "$y$j9T$carol", {}));
    auto apop_of = [&](const std::string& address) {
        auto user = database.find_user(address);
        REQUIRE(user.ok());
        REQUIRE(user->has_value());
        return (*user)->apop_secret;
    };

    REQUIRE_OK(database.set_apop_secret("Bob@Example.TEST", std::string_view("tanstaaf")));
    CHECK(apop_of("bob@example.test") == std::optional<std::string>("tanstaaf"));
    CHECK_FALSE(apop_of("carol@example.test").has_value());  // only bob's row changed
    // Bytes outside ASCII (a UTF-8 secret) and the longest allowed are kept as given.
    std::string utf8 = "s\xc3\xa9same ouvre-toi";
    REQUIRE_OK(database.set_apop_secret("bob@example.test", std::string_view(utf8)));
    CHECK(apop_of("bob@example.test") == utf8);
    std::string longest(directory::max_apop_secret_length, 'k');
    REQUIRE_OK(database.set_apop_secret("bob@example.test", std::string_view(longest)));
    CHECK(apop_of("bob@example.test") == longest);
    // Other columns are untouched.
    CHECK((*database.find_user("bob@example.test"))->password_hash == "$y$j9T$bob");

    REQUIRE_OK(database.set_apop_secret("bob@example.test", std::nullopt));
    CHECK_FALSE(apop_of("bob@example.test").has_value());
    // The column is NULL, not an empty string.
    auto raw = database.database().prepare("SELECT apop_secret IS NULL FROM users WHERE localpart = 'bob'");
    REQUIRE(raw.ok());
    auto row = raw->step();
    REQUIRE(row.ok());
    REQUIRE(*row);
    CHECK(raw->column_int64(0) == 1);
    raw->reset();
    // Clearing what is not there is fine (idempotent).
    REQUIRE_OK(database.set_apop_secret("bob@example.test", std::nullopt));

    REQUIRE_ERROR(database.set_apop_secret("nobody@example.test", std::string_view("x")),
                  "user nobody@example.test does not exist");
    REQUIRE_ERROR(database.set_apop_secret("nobody@example.test", std::nullopt),
                  "user nobody@example.test does not exist");
    REQUIRE_ERROR(database.set_apop_secret("no-at-sign", std::string_view("x")), "expected local@domain");

    REQUIRE_OK(database.set_apop_secret("bob@example.test", std::string_view("kept")));
    auto [bad, message] = GENERATE(table<std::string, std::string>({
        {"", "APOP secret is empty"},
        {std::string(directory::max_apop_secret_length + 1, 'k'), "APOP secret is too long (at most 256 bytes)"},
        {"line\nfeed", "APOP secret contains a control character"},
        {"carriage\rreturn", "APOP secret contains a control character"},
        {"tab\there", "APOP secret contains a control character"},
        {std::string("nul\0byte", 8), "APOP secret contains a control character"},
        {"del\x7f", "APOP secret contains a control character"},
    }));
    INFO("secret: " << bad);
    REQUIRE_ERROR(database.set_apop_secret("bob@example.test", std::string_view(bad)), message);
    CHECK(apop_of("bob@example.test") == std::optional<std::string>("kept"));  // a refused secret changes nothing
    CHECK(directory::check_apop_secret(bad).error() == message);
    // add_user applies the same rules.
    UserOptions options;
    options.apop_secret = bad;
    REQUIRE_ERROR(database.add_user("new@example.test", "h", options), message);
}

TEST_CASE("the schema enforces what the API checks", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_user("bob@example.test", "h", {}));
    auto& raw = database.database();
    CHECK_FALSE(raw.exec("DELETE FROM domains WHERE name = 'example.test'").ok());  // ON DELETE RESTRICT
    CHECK_FALSE(raw.exec("UPDATE users SET mailbox_format = 'mh'").ok());
    CHECK_FALSE(raw.exec("INSERT INTO users (localpart, domain, password_hash, created) "
                         "VALUES ('x', 'nowhere.test', 'h', 0)")
                    .ok());
}

// ---- aliases ----

TEST_CASE("aliases: add, list, delete", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_alias("Staff@Example.test", "Bob@Example.test"));
    REQUIRE_OK(database.add_alias("staff@example.test", "carol@remote.test"));
    REQUIRE_OK(database.add_alias("staff@example.test", "|/usr/bin/archive --Keep"));
    REQUIRE_OK(database.add_alias("abuse@example.test", "/var/log/Abuse.mbox"));

    REQUIRE_ERROR(database.add_alias("staff@example.test", "BOB@example.test"),
                  "alias staff@example.test -> bob@example.test already exists");
    REQUIRE_ERROR(database.add_alias("x@nowhere.test", "bob@example.test"), "domain nowhere.test does not exist");
    REQUIRE_ERROR(database.add_alias("x@example.test", "bob"), "expected an address, |command or /file");
    REQUIRE_ERROR(database.add_alias("x@example.test", "|/bin/x\r\nfoo"), "control characters");
    REQUIRE_ERROR(database.add_alias("x y@example.test", "bob@example.test"), "invalid address");

    auto aliases = database.list_aliases();
    REQUIRE(aliases.ok());
    REQUIRE(aliases->size() == 2);
    CHECK((*aliases)[0].first == "abuse@example.test");
    CHECK((*aliases)[0].second == Targets{"/var/log/Abuse.mbox"});
    CHECK((*aliases)[1].first == "staff@example.test");
    // Insertion order; pipes and files keep their case.
    CHECK((*aliases)[1].second == Targets{"bob@example.test", "carol@remote.test", "|/usr/bin/archive --Keep"});

    REQUIRE_OK(database.delete_alias("STAFF@example.test", std::string_view("Carol@Remote.test")));
    REQUIRE_ERROR(database.delete_alias("staff@example.test", std::string_view("carol@remote.test")),
                  "alias staff@example.test -> carol@remote.test does not exist");
    CHECK(alias_targets(database, "staff@example.test") == Targets{"bob@example.test", "|/usr/bin/archive --Keep"});
    REQUIRE_OK(database.delete_alias("staff@example.test", std::nullopt));
    REQUIRE_ERROR(database.delete_alias("staff@example.test", std::nullopt), "alias staff@example.test does not exist");
    CHECK(database.list_aliases()->size() == 1);
}

// ---- resolution ----

TEST_CASE("resolve: remote, local user, unknown, disabled", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_user("bob@example.test", "h", {}));
    REQUIRE_OK(database.add_user("off@example.test", "h", {}));
    REQUIRE_OK(database.set_enabled("off@example.test", false));

    auto bob = database.resolve("BOB@EXAMPLE.TEST");
    REQUIRE(bob.ok());
    CHECK(bob->kind == Resolution::local_user);
    REQUIRE(bob->user.has_value());
    CHECK(bob->user->address() == "bob@example.test");
    CHECK(bob->targets.empty());

    auto remote = database.resolve("bob@elsewhere.test");
    REQUIRE(remote.ok());
    CHECK(remote->kind == Resolution::remote);
    CHECK_FALSE(remote->user.has_value());

    CHECK(kind_of(database, "nobody@example.test") == Resolution::unknown_local);
    auto off = database.resolve("off@example.test");
    REQUIRE(off.ok());
    CHECK(off->kind == Resolution::unknown_local);
    CHECK_FALSE(off->user.has_value());

    REQUIRE_ERROR(database.resolve("no-at-sign"), "expected local@domain");
}

TEST_CASE("resolve: user+tag subaddresses reach the user unless the full name exists", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_user("bob@example.test", "h", {}));
    REQUIRE_OK(database.add_user("bob+real@example.test", "h", {}));
    REQUIRE_OK(database.add_alias("list@example.test", "bob@example.test"));

    auto tagged = database.resolve("bob+news@example.test");
    REQUIRE(tagged.ok());
    CHECK(tagged->kind == Resolution::local_user);
    CHECK(tagged->user->address() == "bob@example.test");
    CHECK(database.resolve("bob+real@example.test")->user->address() == "bob+real@example.test");
    CHECK(kind_of(database, "list+x@example.test") == Resolution::alias);
    CHECK(kind_of(database, "nobody+x@example.test") == Resolution::unknown_local);
    CHECK(kind_of(database, "+x@example.test") == Resolution::unknown_local);
}

TEST_CASE("resolve: alias expansion", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_domain("b.example"));
    REQUIRE_OK(database.add_user("bob@example.test", "h", {}));
    REQUIRE_OK(database.add_user("carol@example.test", "h", {}));
    REQUIRE_OK(database.add_user("dave@b.example", "h", {}));

    SECTION("recursive, in order, final targets kept") {
        REQUIRE_OK(database.add_alias("all@example.test", "staff@example.test"));
        REQUIRE_OK(database.add_alias("all@example.test", "friend@remote.test"));
        REQUIRE_OK(database.add_alias("all@example.test", "|/usr/bin/log-mail"));
        REQUIRE_OK(database.add_alias("staff@example.test", "bob@example.test"));
        REQUIRE_OK(database.add_alias("staff@example.test", "ops@b.example"));
        REQUIRE_OK(database.add_alias("ops@b.example", "dave@b.example"));
        REQUIRE_OK(database.add_alias("ops@b.example", "/var/log/ops"));
        CHECK(alias_targets(database, "All@Example.Test") ==
              Targets{"bob@example.test", "dave@b.example", "/var/log/ops", "friend@remote.test", "|/usr/bin/log-mail"});
    }
    SECTION("a diamond delivers each target once") {
        REQUIRE_OK(database.add_alias("a@example.test", "b@example.test"));
        REQUIRE_OK(database.add_alias("a@example.test", "c@example.test"));
        REQUIRE_OK(database.add_alias("b@example.test", "bob@example.test"));
        REQUIRE_OK(database.add_alias("c@example.test", "bob@example.test"));
        REQUIRE_OK(database.add_alias("c@example.test", "carol@example.test"));
        CHECK(alias_targets(database, "a@example.test") == Targets{"bob@example.test", "carol@example.test"});
    }
    SECTION("loops are cut; a loop with nothing else is an error") {
        REQUIRE_OK(database.add_alias("a@example.test", "b@example.test"));
        REQUIRE_OK(database.add_alias("b@example.test", "a@example.test"));
        REQUIRE_OK(database.add_alias("b@example.test", "bob@example.test"));
        CHECK(alias_targets(database, "a@example.test") == Targets{"bob@example.test"});
        CHECK(alias_targets(database, "b@example.test") == Targets{"bob@example.test"});
        REQUIRE_OK(database.add_alias("x@example.test", "y@example.test"));
        REQUIRE_OK(database.add_alias("y@example.test", "x@example.test"));
        REQUIRE_ERROR(database.resolve("x@example.test"), "alias x@example.test expands to no target");
    }
    SECTION("an alias wins over a user of the same address; a self reference keeps the mailbox") {
        REQUIRE_OK(database.add_alias("bob@example.test", "bob@remote.test"));
        CHECK(alias_targets(database, "bob@example.test") == Targets{"bob@remote.test"});
        REQUIRE_OK(database.add_user("keep@example.test", "h", {}));
        REQUIRE_OK(database.add_alias("keep@example.test", "Keep@Example.test"));
        REQUIRE_OK(database.add_alias("keep@example.test", "keep@remote.test"));
        CHECK(alias_targets(database, "keep@example.test") == Targets{"keep@example.test", "keep@remote.test"});
    }
    SECTION("a local user named as a target stays final, even when disabled or unknown") {
        REQUIRE_OK(database.add_alias("team@example.test", "carol@example.test"));
        REQUIRE_OK(database.add_alias("team@example.test", "ghost@example.test"));
        REQUIRE_OK(database.set_enabled("carol@example.test", false));
        CHECK(alias_targets(database, "team@example.test") == Targets{"carol@example.test", "ghost@example.test"});
    }
    SECTION("alias to a disabled user's address shadows the user") {
        REQUIRE_OK(database.set_enabled("bob@example.test", false));
        REQUIRE_OK(database.add_alias("bob@example.test", "carol@example.test"));
        CHECK(alias_targets(database, "bob@example.test") == Targets{"carol@example.test"});
    }
}

TEST_CASE("resolve: depth and width limits", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));

    SECTION("16 levels resolve, 17 do not") {
        // a0 -> a1 -> ... -> aN -> final@remote.test
        auto chain = [&](int levels) {
            REQUIRE(database.database().exec("DELETE FROM aliases").ok());
            for (int i = 0; i < levels - 1; ++i)
                REQUIRE_OK(database.add_alias("a" + std::to_string(i) + "@example.test",
                                              "a" + std::to_string(i + 1) + "@example.test"));
            REQUIRE_OK(database.add_alias("a" + std::to_string(levels - 1) + "@example.test", "final@remote.test"));
        };
        chain(directory::max_alias_depth);
        CHECK(alias_targets(database, "a0@example.test") == Targets{"final@remote.test"});
        chain(directory::max_alias_depth + 1);
        REQUIRE_ERROR(database.resolve("a0@example.test"), "nests deeper than 16 levels");
    }
    SECTION("1000 targets resolve, 1001 do not") {
        sqlite::Transaction transaction(database.database());
        auto insert = database.database().prepare("INSERT INTO aliases (address, target) VALUES (?1, ?2)");
        REQUIRE(insert.ok());
        for (size_t i = 0; i < directory::max_alias_targets; ++i)
            REQUIRE(insert->bind(1, "big@example.test").bind(2, "u" + std::to_string(i) + "@remote.test").run().ok());
        REQUIRE(transaction.commit().ok());
        CHECK(alias_targets(database, "big@example.test").size() == directory::max_alias_targets);
        REQUIRE_OK(database.add_alias("big@example.test", "one-more@remote.test"));
        REQUIRE_ERROR(database.resolve("big@example.test"), "more than 1000 targets");
    }
}

TEST_CASE("resolve: static aliases merge with the database", "[directory]") {
    TempDir dir;
    auto database = create_database(dir);
    REQUIRE_OK(database.add_domain("example.test"));
    REQUIRE_OK(database.add_domain("b.example"));
    REQUIRE_OK(database.add_user("bob@example.test", "h", {}));
    REQUIRE_OK(database.add_user("admin@b.example", "h", {}));
    REQUIRE_OK(database.add_alias("webmaster@example.test", "bob@example.test"));

    auto parsed = directory::parse_aliases_file(
        "# system aliases\n"
        "Postmaster: root\n"
        "root: admin@b.example, |/usr/bin/logger -t mail\n"
        "webmaster@example.test: web@remote.test\n");
    REQUIRE(parsed.ok());
    database.set_static_aliases(*parsed);

    // A bare name applies to every local domain; bare targets stay in it.
    CHECK(alias_targets(database, "postmaster@example.test") ==
          Targets{"admin@b.example", "|/usr/bin/logger -t mail"});
    CHECK(alias_targets(database, "POSTMASTER@b.example") == Targets{"admin@b.example", "|/usr/bin/logger -t mail"});
    // Never to a remote domain.
    CHECK(kind_of(database, "postmaster@remote.test") == Resolution::remote);
    // Database targets first, then the file's.
    CHECK(alias_targets(database, "webmaster@example.test") == Targets{"bob@example.test", "web@remote.test"});
    CHECK(kind_of(database, "bob@example.test") == Resolution::local_user);

    // Replacing the static set drops the old one.
    database.set_static_aliases({{"Abuse", {"bob@example.test"}}});
    CHECK(kind_of(database, "postmaster@example.test") == Resolution::unknown_local);
    CHECK(alias_targets(database, "abuse@example.test") == Targets{"bob@example.test"});

    // A bad target in the static set is skipped, not fatal.
    database.set_static_aliases({{"x", {"not valid target", "bob@example.test"}}});
    CHECK(alias_targets(database, "x@example.test") == Targets{"bob@example.test"});
}

// ---- aliases file ----

TEST_CASE("parse_aliases_file: the classic format", "[directory]") {
    auto parsed = directory::parse_aliases_file(
        "# comment\r\n"
        "\n"
        "postmaster:\troot\r\n"
        "Root: bob@Example.TEST,\n"
        "  carol@example.test,\n"
        "# a comment inside an entry is skipped\n"
        "\t\"|/usr/bin/procmail -a \\\"x, y\\\"\" , /var/spool/archive\n"
        "list: a@remote.test, b@remote.test, a@remote.test\n"
        "list: c@remote.test\n"
        "x@example.test: \"quoted@remote.test\"\n");
    INFO((parsed ? "" : parsed.error()));
    REQUIRE(parsed.ok());
    const auto& aliases = *parsed;
    REQUIRE(aliases.size() == 4);
    CHECK(aliases.at("postmaster") == Targets{"root"});
    CHECK(aliases.at("root") ==
          Targets{"bob@example.test", "carol@example.test", "|/usr/bin/procmail -a \"x, y\"", "/var/spool/archive"});
    // Repeated names accumulate, duplicates are dropped.
    CHECK(aliases.at("list") == Targets{"a@remote.test", "b@remote.test", "c@remote.test"});
    CHECK(aliases.at("x@example.test") == Targets{"quoted@remote.test"});

    auto empty = directory::parse_aliases_file("");
    REQUIRE(empty.ok());
    CHECK(empty->empty());
    // Empty list elements (a stray or trailing comma) are ignored.
    auto commas = directory::parse_aliases_file("root: bob,,carol,\n");
    REQUIRE(commas.ok());
    CHECK(commas->at("root") == Targets{"bob", "carol"});
    auto only_comments = directory::parse_aliases_file("# nothing\n\n#more");
    REQUIRE(only_comments.ok());
    CHECK(only_comments->empty());
}

TEST_CASE("parse_aliases_file: errors name the line", "[directory]") {
    auto [text, message] = GENERATE(table<std::string, std::string>({
        {"root: bob\nbroken line\n", "line 2: expected 'name: target, ...'"},
        {"  indented: first\n", "line 1: continuation line without an alias"},
        {"root: :include:/etc/mail/staff\n", "line 1: :include: is not supported"},
        {"root: bob,\n  :INCLUDE: /x\n", "line 2: :include: is not supported"},
        {"root:\n", "line 1: alias root has no targets"},
        {": bob\n", "line 1: missing alias name"},
        {"a b: bob\n", "line 1: invalid alias name"},
        {"root: \"|/bin/x\n", "line 1: unterminated quote"},
        {"root: \"bob\"x\n", "line 1: unexpected text after a quoted target"},
        {"root: bob,\n\n  a\"b\"\n", "line 3: a quote must start the target"},
        {"root: bob, # not a comment inside a value\n", "line 1: invalid target"},
        {"root: bob, \"\"\n", "line 1: empty target"},
        {"root: bob@exa_mple.test\n", "line 1: invalid address"},
        {"root: bob,\n  b ad\n", "line 2: invalid target"},
        {"x@bad_domain: bob\n", "line 1: invalid address"},
        {"ok: bob\nroot: |/bin/x\r\x01\n", "line 2: "},
        {std::string("root: bo\0b\n", 11), "line 1: NUL byte"},
    }));
    INFO(text);
    auto parsed = directory::parse_aliases_file(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error(), Catch::Contains(message));
}
