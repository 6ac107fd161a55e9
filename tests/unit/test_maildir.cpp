// Maildir store: unique names, S=/W= sizes, folders, delivery tmp -> new,
// concurrent deliveries and quota usage.
#include <dirent.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "libmail/maildir.hpp"
#include "tests/unit/test_support.hpp"

using namespace facteur;
using namespace facteur::store;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, std::string_view data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::vector<std::string> list_directory(const std::string& path) {
    std::vector<std::string> names;
    if (DIR* directory = opendir(path.c_str())) {
        while (dirent* entry = readdir(directory))
            if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
        closedir(directory);
    }
    std::sort(names.begin(), names.end());
    return names;
}

mode_t mode_of(const std::string& path) {
    struct stat info {};
    REQUIRE(stat(path.c_str(), &info) == 0);
    return info.st_mode & 07777;
}

}  // namespace

TEST_CASE("unique names follow Dovecot's format with the host escaped") {
    UniqueNameParts parts;
    parts.seconds = 1795000000;
    parts.microseconds = 42;
    parts.pid = 1234;
    parts.counter = 7;
    parts.host = "mx/1:a.example";
    CHECK(format_unique_name(parts) == "1795000000.M42P1234Q7.mx\\0571\\072a.example");
    CHECK(escape_hostname("plain.example") == "plain.example");
    CHECK(escape_hostname("a/b:c") == "a\\057b\\072c");
}

TEST_CASE("new unique names never repeat, even from several threads") {
    std::vector<std::vector<std::string>> per_thread(4);
    std::vector<std::thread> threads;
    for (auto& names : per_thread)
        threads.emplace_back([&names] {
            for (int i = 0; i < 2000; ++i) names.push_back(new_unique_name("host.example"));
        });
    for (auto& thread : threads) thread.join();
    std::set<std::string> all;
    for (const auto& names : per_thread) all.insert(names.begin(), names.end());
    CHECK(all.size() == 8000);
    for (const auto& name : all) {
        CHECK(name.find('/') == std::string::npos);
        CHECK(name.find(':') == std::string::npos);
    }
}

TEST_CASE("S= and W= sizes are read back from file names") {
    std::string name = delivered_name("1795000000.M1P2Q3.host", 1234, 1260);
    CHECK(name == "1795000000.M1P2Q3.host,S=1234,W=1260");
    CHECK(size_from_name(name) == 1234u);
    CHECK(virtual_size_from_name(name) == 1260u);
    CHECK(size_from_name(name + ":2,S") == 1234u);
    CHECK(size_from_name("1795000000.M1P2Q3.host,W=10,S=99:2,RS") == 99u);
    CHECK_FALSE(size_from_name("1795000000.M1P2Q3.host").has_value());
    CHECK_FALSE(size_from_name("1795000000.M1P2Q3.host,S=12x").has_value());
    CHECK_FALSE(size_from_name("1795000000.M1P2Q3.host,S=").has_value());
    CHECK_FALSE(size_from_name("1795000000.M1P2Q3.host:2,S=5").has_value());
    CHECK_FALSE(size_from_name("x,S=99999999999999999999999").has_value());
}

TEST_CASE("Maildir++ folder names are checked") {
    auto [name, valid] = GENERATE(table<std::string, bool>({
        {"", true},
        {"Lists", true},
        {"Lists.facteur", true},
        {"Spam Folder", true},
        {".Lists", false},
        {"Lists.", false},
        {"a..b", false},
        {"..", false},
        {"a/b", false},
        {"../etc", false},
        {std::string("a\nb"), false},
        {std::string(256, 'x'), false},
    }));
    CAPTURE(name);
    CHECK(valid_folder_name(name) == valid);
}

TEST_CASE("paths of a Maildir and its folders") {
    CHECK(maildir_path("/mail/example.test/bob") == "/mail/example.test/bob/Maildir");
    CHECK(maildir_path("/mail/example.test/bob/") == "/mail/example.test/bob/Maildir");
    CHECK(folder_path("/m/Maildir", "") == "/m/Maildir");
    CHECK(folder_path("/m/Maildir", "Lists.x") == "/m/Maildir/.Lists.x");
}

TEST_CASE("a delivery lands in new/ with its size in the name, nothing in tmp/") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.file("example.test/bob"));
    std::string message = "Subject: hi\n\nline one\nline two\n";
    WriteOutcome outcome = deliver_to_maildir(maildir, "mx.example", source_from_string(message));
    REQUIRE(outcome.ok());
    CHECK(mode_of(maildir) == 0700);
    for (const char* sub : {"/tmp", "/new", "/cur"}) CHECK(mode_of(maildir + sub) == 0700);
    CHECK(list_directory(maildir + "/tmp").empty());
    auto delivered = list_directory(maildir + "/new");
    REQUIRE(delivered.size() == 1);
    CHECK(outcome.path == maildir + "/new/" + delivered[0]);
    CHECK(outcome.size == message.size());
    CHECK(read_file(outcome.path) == message);
    CHECK(size_from_name(delivered[0]) == message.size());
    CHECK(virtual_size_from_name(delivered[0]) == message.size() + 4);  // 4 LFs counted as CRLF
    CHECK(delivered[0].find(".mx.example,S=") != std::string::npos);
    CHECK(mode_of(outcome.path) == 0600);
}

TEST_CASE("a delivery to a folder goes into the folder's new/") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    CHECK(folder_exists(maildir, ""));
    CHECK_FALSE(folder_exists(maildir, "Lists"));
    CHECK_FALSE(folder_exists(maildir, "../x"));
    REQUIRE(create_maildir(folder_path(maildir, "Lists")).ok());
    CHECK(folder_exists(maildir, "Lists"));
    WriteOutcome outcome = deliver_to_maildir(folder_path(maildir, "Lists"), "h", source_from_string("a\n"));
    REQUIRE(outcome.ok());
    CHECK(list_directory(maildir + "/.Lists/new").size() == 1);
    CHECK(list_directory(maildir + "/new").empty());
}

TEST_CASE("a source that fails leaves nothing behind") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    WriteOutcome outcome = deliver_to_maildir(maildir, "h", [](const ChunkSink& sink) -> Status {
        sink("Subject: partial\n\n");
        return make_error("queue file vanished");
    });
    CHECK_FALSE(outcome.ok());
    CHECK(outcome.os_error == 0);
    CHECK(outcome.error == "queue file vanished");
    CHECK(list_directory(maildir + "/tmp").empty());
    CHECK(list_directory(maildir + "/new").empty());
}

TEST_CASE("an unwritable Maildir reports the errno") {
    test::TempDir dir;
    write_file(dir.file("file"), "x");
    // A Maildir path below a regular file cannot be created.
    WriteOutcome outcome = deliver_to_maildir(dir.file("file") + "/Maildir", "h", source_from_string("a\n"));
    CHECK_FALSE(outcome.ok());
    CHECK_FALSE(outcome.error.empty());
}

TEST_CASE("concurrent deliveries from several threads all arrive intact") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    constexpr int kThreads = 6, kEach = 30;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                std::string body = fmt::format("Subject: {} {}\n\n{}\n", t, i, std::string(100 + i * 37, 'a' + t));
                if (!deliver_to_maildir(maildir, "h", source_from_string(body)).ok()) ++failures;
            }
        });
    for (auto& thread : threads) thread.join();
    CHECK(failures == 0);
    auto delivered = list_directory(maildir + "/new");
    REQUIRE(delivered.size() == kThreads * kEach);
    std::set<std::string> subjects;
    for (const auto& name : delivered) {
        std::string content = read_file(maildir + "/new/" + name);
        CHECK(size_from_name(name) == content.size());
        subjects.insert(content.substr(0, content.find('\n')));
    }
    CHECK(subjects.size() == kThreads * kEach);
    CHECK(list_directory(maildir + "/tmp").empty());
}

TEST_CASE("quota usage sums new/ and cur/ of INBOX and folders") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    auto empty = maildir_usage(maildir);
    REQUIRE(empty.ok());
    CHECK(*empty == 0);

    REQUIRE(create_maildir(maildir).ok());
    REQUIRE(create_maildir(folder_path(maildir, "Lists")).ok());
    // S= is trusted (no stat needed), files without it are stat'ed.
    write_file(maildir + "/new/1.M1P1Q1.h,S=1000,W=1010", "short");
    write_file(maildir + "/cur/2.M1P1Q2.h,S=500:2,S", "x");
    write_file(maildir + "/cur/3.M1P1Q3.h:2,", std::string(77, 'y'));
    write_file(maildir + "/tmp/4.M1P1Q4.h", std::string(10000, 'z'));  // tmp/ does not count
    write_file(maildir + "/.Lists/new/5.M1P1Q5.h,S=20", "");
    write_file(maildir + "/.Lists/cur/6.M1P1Q6.h", std::string(3, 'w'));
    auto used = maildir_usage(maildir);
    REQUIRE(used.ok());
    CHECK(*used == 1000 + 500 + 77 + 20 + 3);

    WriteOutcome outcome = deliver_to_maildir(maildir, "h", source_from_string("12345\n"));
    REQUIRE(outcome.ok());
    CHECK(*maildir_usage(maildir) == 1600 + 6);
}
