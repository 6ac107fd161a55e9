// Unit tests for libmail/system and libmail/daemon: directories, durable
// writes, and taking the sockets master hands over.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/unit/test_support.hpp"
#include "libmail/daemon.hpp"
#include "libmail/system.hpp"

using namespace facteur;
using test::TempDir;

namespace {

mode_t mode_of(const std::string& path) {
    struct stat info {};
    REQUIRE(stat(path.c_str(), &info) == 0);
    return info.st_mode & 07777;
}

}  // namespace

TEST_CASE("ensure_directory creates parents and fixes the mode") {
    TempDir dir;
    std::string nested = dir.path + "/a/b/c";
    REQUIRE(system::ensure_directory(nested, 0700).ok());
    CHECK(mode_of(nested) == 0700);
    chmod(nested.c_str(), 0777);
    REQUIRE(system::ensure_directory(nested, 0750).ok());
    CHECK(mode_of(nested) == 0750);
    // A file in the way is an error, not a crash.
    std::ofstream(dir.path + "/file") << "x";
    auto status = system::ensure_directory(dir.path + "/file", 0700);
    REQUIRE_FALSE(status.ok());
    CHECK_THAT(status.error(), Catch::Contains("not a directory"));
}

TEST_CASE("ensure_directory never touches system directories") {
    for (const char* path : {"/", "/var", "/var/lib/", "/etc", "/tmp"}) {
        auto status = system::ensure_directory(path, 0700);
        REQUIRE_FALSE(status.ok());
        CHECK_THAT(status.error(), Catch::Contains("system directory"));
    }
    CHECK(mode_of("/tmp") == 01777);
}

TEST_CASE("write_file_atomically replaces content durably") {
    TempDir dir;
    std::string file = dir.path + "/data";
    REQUIRE(system::write_file_atomically(file, "first", 0600).ok());
    REQUIRE(system::write_file_atomically(file, std::string("sec\0ond", 7), 0600).ok());
    std::ifstream in(file, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    CHECK(content.str() == std::string("sec\0ond", 7));
    CHECK(mode_of(file) == 0600);
    CHECK_FALSE(system::write_file_atomically(dir.path + "/missing/x", "x", 0600).ok());
}

TEST_CASE("parent_directory") {
    CHECK(system::parent_directory("/a/b/c") == "/a/b");
    CHECK(system::parent_directory("/a") == "/");
    CHECK(system::parent_directory("a") == ".");
}

TEST_CASE("accounts") {
    auto root = system::find_account("root");
    REQUIRE(root.ok());
    CHECK(root->uid == 0);
    auto missing = system::find_account("no-such-user-facteur");
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.error(), Catch::Contains("does not exist"));
    CHECK(system::current_account().uid == geteuid());
}

TEST_CASE("inherited sockets are taken by name from the environment") {
    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    // Out of the way of 3 and 4 first: socketpair may have returned them.
    for (int& fd : pair) {
        int high = fcntl(fd, F_DUPFD_CLOEXEC, 200);
        close(fd);
        fd = high;
    }
    // Put the sockets where master would: 3 and 4 (moving whatever is there).
    int saved3 = fcntl(3, F_DUPFD_CLOEXEC, 100);
    int saved4 = fcntl(4, F_DUPFD_CLOEXEC, 100);
    REQUIRE(dup2(pair[0], 3) == 3);
    REQUIRE(dup2(pair[1], 4) == 4);
    close(pair[0]);
    close(pair[1]);
    setenv(daemon::kListenFdsVariable, "2", 1);
    setenv(daemon::kListenNamesVariable, "lookup,admin", 1);
    {
        auto sockets = daemon::InheritedSockets::take_from_environment();
        INFO((sockets.ok() ? std::string() : sockets.error()));
        REQUIRE(sockets.ok());
        CHECK(getenv(daemon::kListenFdsVariable) == nullptr);
        auto admin = sockets->take("admin");
        REQUIRE(admin.ok());
        CHECK(admin->get() == 4);
        auto missing = sockets->take("sasl");
        REQUIRE_FALSE(missing.ok());
        CHECK_THAT(missing.error(), Catch::Contains("sasl"));
        auto again = sockets->take("admin");
        CHECK_FALSE(again.ok());
    }
    // Bad environments are errors with a reason.
    setenv(daemon::kListenFdsVariable, "2", 1);
    setenv(daemon::kListenNamesVariable, "only-one", 1);
    CHECK_FALSE(daemon::InheritedSockets::take_from_environment().ok());
    setenv(daemon::kListenFdsVariable, "x", 1);
    CHECK_FALSE(daemon::InheritedSockets::take_from_environment().ok());
    setenv(daemon::kListenFdsVariable, "1", 1);
    setenv(daemon::kListenNamesVariable, "notasocket", 1);
    int file = open("/dev/null", O_RDONLY);
    dup2(file, 3);
    close(file);
    auto refused = daemon::InheritedSockets::take_from_environment();
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(refused.error(), Catch::Contains("not a socket"));
    unsetenv(daemon::kListenFdsVariable);
    unsetenv(daemon::kListenNamesVariable);
    if (saved3 >= 0) dup2(saved3, 3);
    if (saved4 >= 0) dup2(saved4, 4);
}
