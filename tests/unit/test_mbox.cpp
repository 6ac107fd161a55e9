// mbox store: From_ lines, mboxrd quoting (golden cases, any chunking),
// appends, truncation after a failed write, dot-lock and fcntl locks, and
// concurrent deliveries.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "libmail/mbox.hpp"
#include "libmail/unique_fd.hpp"
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

std::string quote_whole(std::string_view text) {
    FromQuoter quoter;
    std::string out = quoter.feed(text);
    return out + quoter.finish();
}

LockSettings quick_locks() {
    LockSettings settings;
    settings.timeout = std::chrono::milliseconds(300);
    settings.retry_interval = std::chrono::milliseconds(10);
    return settings;
}

constexpr std::time_t kTime = 1795000000;  // Sun Nov 18 ... 2026 UTC

}  // namespace

TEST_CASE("From_ lines use the sender (MAILER-DAEMON for <>) and asctime in UTC") {
    CHECK(from_line("bob@example.test", 0) == "From bob@example.test Thu Jan  1 00:00:00 1970\n");
    CHECK(from_line("", 0) == "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n");
    CHECK(from_line("a b@x", 1000000000) == "From a_b@x Sun Sep  9 01:46:40 2001\n");
    CHECK(from_line("a\nb@x", 1000000000) == "From a_b@x Sun Sep  9 01:46:40 2001\n");
}

TEST_CASE("mboxrd quoting adds one '>' to every ^>*From  line") {
    auto [input, expected] = GENERATE(table<std::string, std::string>({
        {"From me\n", ">From me\n"},
        {">From me\n", ">>From me\n"},
        {">>From me\n", ">>>From me\n"},
        {"a\nFrom b\nc\n", "a\n>From b\nc\n"},
        {"From \n", ">From \n"},
        {"From\n", "From\n"},            // no space: not a From_ line
        {"Fromage\n", "Fromage\n"},
        {"from me\n", "from me\n"},      // case matters (RFC 4155)
        {" From me\n", " From me\n"},
        {"x From me\n", "x From me\n"},
        {">>>\n", ">>>\n"},
        {">\n>F\n", ">\n>F\n"},
        {"From me", ">From me"},         // no final newline
        {">>", ">>"},
        {"Fro", "Fro"},
        {"\n\nFrom x\n\n", "\n\n>From x\n\n"},
        {"", ""},
    }));
    CAPTURE(input);
    CHECK(quote_whole(input) == expected);
    // The same at every split into two chunks, and byte by byte.
    for (size_t split = 0; split <= input.size(); ++split) {
        FromQuoter quoter;
        std::string out = quoter.feed(input.substr(0, split));
        out += quoter.feed(input.substr(split));
        out += quoter.finish();
        CHECK(out == expected);
    }
    FromQuoter bytewise;
    std::string out;
    for (char c : input) out += bytewise.feed(std::string_view(&c, 1));
    out += bytewise.finish();
    CHECK(out == expected);
}

TEST_CASE("mboxrd unquoting reverses quoting") {
    CHECK(unquote_from_line(">From me") == "From me");
    CHECK(unquote_from_line(">>From me") == ">From me");
    CHECK(unquote_from_line("From me") == "From me");
    CHECK(unquote_from_line(">Fromage") == ">Fromage");
    CHECK(unquote_from_line(">>>") == ">>>");
}

TEST_CASE("appends write From_ line, quoted body and separating empty line") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.file("example.test/bob"));
    CHECK(mbox == dir.file("example.test/bob/mbox"));
    WriteOutcome first = deliver_to_mbox(mbox, "alice@example.test", kTime,
                                         source_from_string("Subject: one\n\nFrom here\n>From there\n"));
    REQUIRE(first.ok());
    WriteOutcome second = deliver_to_mbox(mbox, "", kTime, source_from_string("Subject: two\n\nno final newline"));
    REQUIRE(second.ok());
    std::string expected = from_line("alice@example.test", kTime) +
                           "Subject: one\n\n>From here\n>>From there\n\n" + from_line("", kTime) +
                           "Subject: two\n\nno final newline\n\n";
    CHECK(read_file(mbox) == expected);
    CHECK(first.size + second.size == expected.size());
    struct stat info {};
    REQUIRE(stat(mbox.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    CHECK(access((mbox + ".lock").c_str(), F_OK) != 0);  // dot-lock released
    auto used = mbox_usage(mbox);
    REQUIRE(used.ok());
    CHECK(*used == expected.size());
    CHECK(*mbox_usage(dir.file("missing")) == 0);
}

TEST_CASE("a source failing half-way leaves the mbox as it was") {
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    write_file(mbox, "From a Thu Jan  1 00:00:00 1970\nSubject: old\n\nold body\n\n");
    std::string before = read_file(mbox);
    WriteOutcome outcome = deliver_to_mbox(mbox, "x@y", kTime, [](const ChunkSink& sink) -> Status {
        sink("Subject: new\n\n");
        sink(std::string(100000, 'b'));
        return make_error("queue file read error");
    });
    CHECK_FALSE(outcome.ok());
    CHECK(outcome.error == "queue file read error");
    CHECK(read_file(mbox) == before);
}

TEST_CASE("a real write error (file size limit) truncates back to the old size") {
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    std::string old = "From a Thu Jan  1 00:00:00 1970\nSubject: old\n\nold body\n\n";
    write_file(mbox, old);
    // RLIMIT_FSIZE makes write(2) fail with EFBIG past the limit, exactly
    // like a full disk fails with ENOSPC, without needing one.
    struct sigaction ignore {}, previous {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(sigaction(SIGXFSZ, &ignore, &previous) == 0);
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit limited = saved;
    limited.rlim_cur = old.size() + 4096;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    WriteOutcome outcome = deliver_to_mbox(mbox, "x@y", kTime, source_from_string(std::string(64 * 1024, 'z')));
    setrlimit(RLIMIT_FSIZE, &saved);
    sigaction(SIGXFSZ, &previous, nullptr);
    CHECK_FALSE(outcome.ok());
    CHECK(outcome.os_error == EFBIG);
    CHECK(read_file(mbox) == old);
}

TEST_CASE("a held dot-lock makes the delivery wait, then fail with EAGAIN") {
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    write_file(mbox + ".lock", "12345\n");
    auto started = std::chrono::steady_clock::now();
    WriteOutcome outcome = deliver_to_mbox(mbox, "x@y", kTime, source_from_string("a\n"), quick_locks());
    CHECK_FALSE(outcome.ok());
    CHECK(outcome.os_error == EAGAIN);
    CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(250));
    CHECK(read_file(mbox).empty());
    CHECK(access((mbox + ".lock").c_str(), F_OK) == 0);  // someone else's lock stays
}

TEST_CASE("a stale dot-lock (older than 5 minutes) is removed") {
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    std::string lock = mbox + ".lock";
    write_file(lock, "12345\n");
    timespec old[2] = {{time(nullptr) - 600, 0}, {time(nullptr) - 600, 0}};
    REQUIRE(utimensat(AT_FDCWD, lock.c_str(), old, 0) == 0);
    WriteOutcome outcome = deliver_to_mbox(mbox, "x@y", kTime, source_from_string("a\n"), quick_locks());
    REQUIRE(outcome.ok());
    CHECK(read_file(mbox) == from_line("x@y", kTime) + "a\n\n");
    CHECK(access(lock.c_str(), F_OK) != 0);
}

TEST_CASE("a held fcntl lock makes the delivery fail with EAGAIN") {
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    write_file(mbox, "");
    UniqueFd holder(open(mbox.c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(holder);
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    REQUIRE(fcntl(holder.get(), F_OFD_SETLK, &lock) == 0);
    WriteOutcome outcome = deliver_to_mbox(mbox, "x@y", kTime, source_from_string("a\n"), quick_locks());
    CHECK_FALSE(outcome.ok());
    CHECK(outcome.os_error == EAGAIN);
    CHECK(access((mbox + ".lock").c_str(), F_OK) != 0);  // our dot-lock was released
    holder.reset();
    CHECK(deliver_to_mbox(mbox, "x@y", kTime, source_from_string("a\n"), quick_locks()).ok());
}

TEST_CASE("concurrent deliveries to one mbox all land intact") {
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    constexpr int kThreads = 4, kEach = 15;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                std::string body = fmt::format("Subject: {}-{}\n\n{}\nFrom inside\n", t, i, std::string(5000, 'a' + t));
                if (!deliver_to_mbox(mbox, "s@x", kTime, source_from_string(body)).ok()) ++failures;
            }
        });
    for (auto& thread : threads) thread.join();
    CHECK(failures == 0);
    std::string content = read_file(mbox);
    std::string expected_from = from_line("s@x", kTime);
    size_t messages = 0;
    size_t position = 0;
    while (position < content.size()) {
        REQUIRE(content.compare(position, expected_from.size(), expected_from) == 0);
        size_t end = content.find("\n\n" + expected_from, position + 1);
        std::string message = content.substr(position, end == std::string::npos ? std::string::npos
                                                                                 : end + 2 - position);
        // Each message whole: its subject, one body line of its own letter, the quoted line.
        size_t subject = message.find("Subject: ");
        REQUIRE(subject != std::string::npos);
        char letter = message[message.find("\n\n") + 2];
        CHECK(message.find(std::string(5000, letter) + "\n>From inside\n\n") != std::string::npos);
        ++messages;
        position = end == std::string::npos ? content.size() : end + 2;
    }
    CHECK(messages == kThreads * kEach);
}

TEST_CASE("a delivery whose mbox is replaced between open and lock appends to the new file") {
    // A POP3 commit renames a rewritten mbox over the path while it holds
    // the locks. deliverd, which opened the old file and then waited for
    // the lock, must not append to that dead file (the mail would be lost
    // with it): it checks the path still names its file and reopens.
    test::TempDir dir;
    std::string mbox = dir.file("mbox");
    std::string old_content = "From a Thu Jan  1 00:00:00 1970\nSubject: old\n\nold\n\n";
    write_file(mbox, old_content);
    UniqueFd old_file(open(mbox.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(old_file);
    // Holding the dot-lock stops the delivery between its open and its lock.
    std::string lock = mbox + ".lock";
    write_file(lock, "1\n");
    WriteOutcome outcome;
    std::thread delivery([&] { outcome = deliver_to_mbox(mbox, "x@y", kTime, source_from_string("Subject: new\n\nnew\n")); });
    // Deterministic: wait until the delivery has the mbox open (it then
    // waits for the dot-lock), seen through /proc.
    bool opened = false;
    for (int tries = 0; tries < 2000 && !opened; ++tries) {
        int found = 0;
        for (int fd = 0; fd < 1024; ++fd) {
            char target[4096];
            ssize_t n = readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), target, sizeof target);
            if (n > 0 && std::string_view(target, static_cast<size_t>(n)) == mbox) ++found;
        }
        opened = found >= 2;  // ours (old_file) and the delivery's
        if (!opened) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(opened);
    std::string replacement = dir.file("mbox.rewritten");
    std::string new_content = "From b Thu Jan  1 00:00:00 1970\nSubject: kept\n\nkept\n\n";
    write_file(replacement, new_content);
    REQUIRE(rename(replacement.c_str(), mbox.c_str()) == 0);
    REQUIRE(unlink(lock.c_str()) == 0);
    delivery.join();
    REQUIRE(outcome.ok());
    CHECK(read_file(mbox) == new_content + from_line("x@y", kTime) + "Subject: new\n\nnew\n\n");
    // The replaced file got nothing.
    struct stat info {};
    REQUIRE(fstat(old_file.get(), &info) == 0);
    CHECK(static_cast<size_t>(info.st_size) == old_content.size());
}
