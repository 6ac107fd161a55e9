// The read side of the mail store: served sizes, Maildir and mbox INBOX
// snapshots (order, unique ids, \Seen, sizes equal to what readers return),
// commits of deletions and \Seen, their behaviour when other programs
// change the mailbox meanwhile, and the POP3 session lock.
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <new>
#include <random>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "libmail/ascii.hpp"
#include "libmail/mailbox.hpp"
#include "libmail/mailbox_mbox_parse.hpp"
#include "libmail/maildir.hpp"
#include "libmail/mbox.hpp"
#include "tests/unit/test_support.hpp"

// Live heap bytes, to measure what a snapshot keeps per message. Replacing
// the global operator new/delete is allowed in a program (this test is one).
namespace {
std::atomic<int64_t> live_heap_bytes{0};
std::atomic<int64_t> peak_heap_bytes{0};
void* counted_allocation(std::size_t size) {
    void* pointer = std::malloc(size == 0 ? 1 : size);
    if (pointer == nullptr) throw std::bad_alloc();
    int64_t now = live_heap_bytes += static_cast<int64_t>(malloc_usable_size(pointer));
    int64_t peak = peak_heap_bytes.load();
    while (now > peak && !peak_heap_bytes.compare_exchange_weak(peak, now)) {
    }
    return pointer;
}
void counted_free(void* pointer) noexcept {
    if (pointer == nullptr) return;
    live_heap_bytes -= static_cast<int64_t>(malloc_usable_size(pointer));
    std::free(pointer);
}
}  // namespace

void* operator new(std::size_t size) { return counted_allocation(size); }
void* operator new[](std::size_t size) { return counted_allocation(size); }
void operator delete(void* pointer) noexcept { counted_free(pointer); }
void operator delete[](void* pointer) noexcept { counted_free(pointer); }
void operator delete(void* pointer, std::size_t) noexcept { counted_free(pointer); }
void operator delete[](void* pointer, std::size_t) noexcept { counted_free(pointer); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return counted_allocation(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* pointer, const std::nothrow_t&) noexcept { counted_free(pointer); }
void operator delete[](void* pointer, const std::nothrow_t&) noexcept { counted_free(pointer); }

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
    REQUIRE(out.good());
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::set<std::string> list(const std::string& directory) {
    std::set<std::string> names;
    if (DIR* dir = opendir(directory.c_str())) {
        while (dirent* entry = readdir(dir))
            if (entry->d_name[0] != '.') names.insert(entry->d_name);
        closedir(dir);
    }
    return names;
}

// The served form, written independently of served_size: LF -> CRLF
// unless a CR precedes it.
std::string crlf(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
        out += text[i];
    }
    return out;
}

std::string read_all(MessageReader& reader, size_t capacity) {
    std::string out;
    std::vector<char> buffer(capacity);
    for (;;) {
        auto got = reader.read(buffer.data(), capacity);
        REQUIRE(got.ok());
        REQUIRE(*got <= capacity);
        if (*got == 0) return out;
        out.append(buffer.data(), *got);
    }
}

std::string message_text(Mailbox& box, size_t index, size_t capacity = 4096) {
    auto reader = box.open_message(index);
    REQUIRE(reader.ok());
    return read_all(**reader, capacity);
}

std::unique_ptr<Mailbox> open_box(const std::string& mail_path, Format format, const OpenOptions& options = {}) {
    auto box = open_inbox(mail_path, format, options);
    INFO((box.ok() ? std::string() : box.error()));
    REQUIRE(box.ok());
    return std::move(*box);
}

std::string md5_hex(std::string_view bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    REQUIRE(EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_md5(), nullptr) == 1);
    std::string out;
    for (unsigned int i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
    return out;
}

std::string quote_whole(std::string_view text) {
    FromQuoter quoter;
    std::string out = quoter.feed(text);
    return out + quoter.finish();
}

LockSettings quick_locks() {
    LockSettings settings;
    settings.timeout = std::chrono::milliseconds(200);
    settings.retry_interval = std::chrono::milliseconds(10);
    return settings;
}

constexpr std::time_t kTime = 1795000000;

// A Maildir message file named the way deliverd names them.
std::string put_maildir_file(const std::string& maildir, std::string_view sub, int64_t seconds, long microseconds,
                             uint64_t counter, std::string_view content, std::string_view info = "") {
    UniqueNameParts parts;
    parts.seconds = seconds;
    parts.microseconds = microseconds;
    parts.pid = 4242;
    parts.counter = counter;
    parts.host = "mx.example.test";
    std::string name = delivered_name(format_unique_name(parts), content.size(), served_size(content));
    name += info;
    write_file(fmt::format("{}/{}/{}", maildir, sub, name), content);
    return name;
}

// The reference for what an mbox reader returns: the message with the
// mbox-internal header fields (and their continuations) left out.
const char* const kInternalFields[] = {"status", "x-status", "x-keywords", "x-uid",
                                       "x-imap", "x-imapbase", "content-length"};

struct Expected {
    std::string content;
    std::string header;  // the kept header lines, for the unique id
    bool seen = false;
};

Expected strip_internal(std::string_view message) {
    Expected expected;
    bool in_header = true, dropping = false, status = false;
    size_t position = 0;
    while (position < message.size()) {
        size_t newline = message.find('\n', position);
        size_t end = newline == std::string_view::npos ? message.size() : newline + 1;
        std::string_view line = message.substr(position, end - position);
        position = end;
        if (!in_header) {
            expected.content += line;
            continue;
        }
        if (line == "\n" || line == "\r\n") {
            in_header = false;
            expected.content += line;
            continue;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (dropping) {
                if (status && line.find('R') != std::string_view::npos) expected.seen = true;
                continue;
            }
            expected.content += line;
            expected.header += line;
            continue;
        }
        dropping = status = false;
        size_t colon = line.find(':');
        if (colon != std::string_view::npos) {
            std::string_view name = line.substr(0, colon);
            while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
            for (const char* field : kInternalFields)
                if (ascii::iequals(name, field)) dropping = true;
            status = ascii::iequals(name, "status");
            if (dropping) {
                if (status && line.substr(colon).find('R') != std::string_view::npos) expected.seen = true;
                continue;
            }
        }
        expected.content += line;
        expected.header += line;
    }
    return expected;
}

// An mbox as mboxrd writers make it; the last message may lack its final
// newline and separator (a file another program cut short).
std::string build_mbox(const std::vector<std::string>& messages, bool last_unterminated = false) {
    std::string mbox;
    for (size_t i = 0; i < messages.size(); ++i) {
        mbox += from_line(fmt::format("sender{}@example.test", i), kTime + static_cast<std::time_t>(i));
        mbox += quote_whole(messages[i]);
        if (last_unterminated && i + 1 == messages.size()) break;
        if (messages[i].empty() || messages[i].back() != '\n') mbox += '\n';
        mbox += '\n';
    }
    return mbox;
}

// What a reader should return for message `i` of build_mbox().
std::string stored_form(const std::string& message, bool unterminated) {
    if (unterminated || (!message.empty() && message.back() == '\n')) return message;
    return message + "\n";
}

}  // namespace

TEST_CASE("mailbox formats are named maildir and mbox") {
    CHECK(*parse_format("maildir") == Format::maildir);
    CHECK(*parse_format("mbox") == Format::mbox);
    CHECK_FALSE(parse_format("Maildir").ok());
    CHECK_FALSE(parse_format("").ok());
    CHECK(format_name(Format::maildir) == "maildir");
    CHECK(format_name(Format::mbox) == "mbox");
}

TEST_CASE("served size counts every LF not preceded by CR twice") {
    auto [text, size] = GENERATE(table<std::string, uint64_t>({
        {"", 0},
        {"a", 1},
        {"a\n", 3},
        {"a\r\n", 3},
        {"\n\n", 4},
        {"\r", 1},
        {"\r\r\n", 3},
        {"\n\r", 3},
        {"\r\n\n", 4},
        {"x\ny\r\nz", 7},
    }));
    CAPTURE(text);
    CHECK(served_size(text) == size);
    CHECK(served_size(text) == crlf(text).size());
    // The streaming counter agrees at every split, including a CR ending
    // one chunk and its LF starting the next, and byte by byte.
    for (size_t split = 0; split <= text.size(); ++split) {
        ServedSizeCounter counter;
        counter.feed(std::string_view(text).substr(0, split));
        counter.feed(std::string_view(text).substr(split));
        CHECK(counter.size() == size);
    }
    ServedSizeCounter bytewise;
    for (char c : text) bytewise.feed(std::string_view(&c, 1));
    CHECK(bytewise.size() == size);
}

TEST_CASE("a mailbox that does not exist is empty and is not created") {
    test::TempDir dir;
    std::string mail_path = dir.file("example.test/nobody");
    auto format = GENERATE(Format::maildir, Format::mbox);
    auto box = open_box(mail_path, format);
    CHECK(box->format() == format);
    CHECK(box->count() == 0);
    CHECK_FALSE(exists(mail_path));
    auto report = box->commit({}, {});
    REQUIRE(report.ok());
    CHECK(report->deleted == 0);
    CHECK_FALSE(exists(mail_path));
    CHECK_FALSE(box->open_message(0).ok());
}

// ---------------------------------------------------------------- Maildir

TEST_CASE("Maildir: delivered messages read back with their exact served sizes") {
    test::TempDir dir;
    std::string mail_path = dir.file("example.test/bob");
    std::vector<std::string> messages = {
        "Subject: one\n\nbody\n",
        "Subject: two\n\nno final newline",
        "Subject: three\n\n\n\nempty lines\n\n",
        std::string("Subject: big\n\n") + std::string(200000, 'x') + "\n",
    };
    for (const auto& message : messages) {
        WriteOutcome outcome = deliver_to_maildir(maildir_path(mail_path), "mx.example.test", source_from_string(message));
        REQUIRE(outcome.ok());
        // Distinct microseconds, so the delivery order is the listing order.
        usleep(2000);
    }
    size_t capacity = GENERATE(1, 7, 4096);
    auto box = open_box(mail_path, Format::maildir);
    REQUIRE(box->count() == messages.size());
    std::set<std::string> uids;
    for (size_t i = 0; i < messages.size(); ++i) {
        CAPTURE(i, capacity);
        std::string text = message_text(*box, i, capacity);
        CHECK(text == messages[i]);
        CHECK(box->size(i) == crlf(text).size());
        CHECK_FALSE(box->seen(i));
        uids.insert(std::string(box->uid(i)));
        CHECK(box->uid(i).find(',') == std::string_view::npos);
        CHECK(box->uid(i).find(".M") != std::string_view::npos);
    }
    CHECK(uids.size() == messages.size());
}

TEST_CASE("Maildir: oldest first by seconds then microseconds, numerically, then by name") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    // Written in scrambled order, across new/ and cur/.
    std::string d = put_maildir_file(maildir, "cur", 1000, 0, 4, "d\n", ":2,S");
    std::string b = put_maildir_file(maildir, "new", 999, 10, 2, "b\n");
    std::string c = put_maildir_file(maildir, "new", 999, 900000, 3, "c\n");
    std::string a = put_maildir_file(maildir, "new", 999, 9, 1, "a\n");
    std::string e = put_maildir_file(maildir, "cur", 1000, 0, 5, "e\n", ":2,");
    write_file(maildir + "/new/zzz-no-time", "z\n");
    write_file(maildir + "/cur/abc-no-time:2,FS", "y\n");
    write_file(maildir + "/new/1000.legacy_1.host", "old style\n");  // seconds only
    // Not messages: dot files, directories, symbolic links.
    write_file(maildir + "/new/.hidden", "h\n");
    REQUIRE(mkdir((maildir + "/cur/subdir").c_str(), 0700) == 0);
    REQUIRE(symlink((maildir + "/new/" + a).c_str(), (maildir + "/cur/link").c_str()) == 0);

    auto box = open_box(dir.path, Format::maildir);
    std::vector<std::string> order;
    for (size_t i = 0; i < box->count(); ++i) order.push_back(message_text(*box, i));
    // d, e and the old-style name share (1000 s, 0 us): by base name then.
    CHECK(order == std::vector<std::string>{"a\n", "b\n", "c\n", "d\n", "e\n", "old style\n", "y\n", "z\n"});
    CHECK(box->seen(3));
    CHECK_FALSE(box->seen(4));
    CHECK_FALSE(box->seen(5));
    CHECK(box->seen(6));
    CHECK(box->uid(6) == "abc-no-time");
    // Files without W= were read for their size.
    CHECK(box->size(7) == 3);
    // The same order in another session.
    auto again = open_box(dir.path, Format::maildir);
    REQUIRE(again->count() == box->count());
    for (size_t i = 0; i < box->count(); ++i) CHECK(again->uid(i) == box->uid(i));
}

TEST_CASE("Maildir: unique ids are the base name, or its MD5 when unusable, and survive flag changes") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    std::string normal = put_maildir_file(maildir, "new", 1700000000, 1, 1, "n\n");
    std::string long_base = "1700000001." + std::string(80, 'L');
    write_file(maildir + "/new/" + long_base + ",S=2", "l\n");
    std::string spaced = "1700000002.with space";
    write_file(maildir + "/cur/" + spaced + ":2,", "s\n");

    auto box = open_box(dir.path, Format::maildir);
    REQUIRE(box->count() == 3);
    CHECK(box->uid(0) == normal.substr(0, normal.find(',')));
    CHECK(box->uid(1) == md5_hex(long_base));
    CHECK(box->uid(2) == md5_hex(spaced));

    // Another program (imapd) moves the first to cur/ with flags.
    REQUIRE(rename((maildir + "/new/" + normal).c_str(), (maildir + "/cur/" + normal + ":2,RS").c_str()) == 0);
    auto again = open_box(dir.path, Format::maildir);
    REQUIRE(again->count() == 3);
    for (size_t i = 0; i < 3; ++i) CHECK(again->uid(i) == box->uid(i));
    CHECK(again->seen(0));
}

TEST_CASE("Maildir: a file moved between new/ and cur/ during the scan is listed once") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    std::string name = put_maildir_file(maildir, "new", 1700000000, 1, 1, "x\n");
    // Both names present: what a scan can see while imapd renames.
    REQUIRE(link((maildir + "/new/" + name).c_str(), (maildir + "/cur/" + name + ":2,S").c_str()) == 0);
    auto box = open_box(dir.path, Format::maildir);
    REQUIRE(box->count() == 1);
    CHECK(box->seen(0));  // the cur/ name wins
}

TEST_CASE("Maildir: commit deletes and marks seen, delete winning over seen") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    std::string a = put_maildir_file(maildir, "new", 1700000000, 1, 1, "a\n");
    std::string b = put_maildir_file(maildir, "new", 1700000000, 2, 2, "b\n");
    std::string c = put_maildir_file(maildir, "cur", 1700000000, 3, 3, "c\n", ":2,FT");
    std::string d = put_maildir_file(maildir, "cur", 1700000000, 4, 4, "d\n", ":2,S");
    std::string e = put_maildir_file(maildir, "new", 1700000000, 5, 5, "e\n");
    std::string f = put_maildir_file(maildir, "cur", 1700000000, 6, 6, "f\n", ":2,DFPRT");

    auto box = open_box(dir.path, Format::maildir);
    REQUIRE(box->count() == 6);
    auto report = box->commit({0, 4}, {1, 2, 3, 4, 5});
    REQUIRE(report.ok());
    CHECK(report->deleted == 2);
    CHECK(report->marked_seen == 3);  // d was seen already, e was deleted
    CHECK(report->already_gone == 0);
    CHECK(list(maildir + "/new").empty());
    auto base = [](const std::string& name) { return name.substr(0, name.find(':')); };
    CHECK(list(maildir + "/cur") ==
          std::set<std::string>{b + ":2,S", base(c) + ":2,FST", d, base(f) + ":2,DFPRST"});

    auto next = open_box(dir.path, Format::maildir);
    REQUIRE(next->count() == 4);
    size_t kept[] = {1, 2, 3, 5};
    for (size_t i = 0; i < 4; ++i) {
        CHECK(next->seen(i));
        CHECK(next->uid(i) == box->uid(kept[i]));
    }
    CHECK(message_text(*next, 0) == "b\n");
}

TEST_CASE("Maildir: seen-only commit, and a commit with nothing to do") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    std::string a = put_maildir_file(maildir, "new", 1700000000, 1, 1, "a\n");
    auto box = open_box(dir.path, Format::maildir);
    auto nothing = box->commit({}, {});
    REQUIRE(nothing.ok());
    CHECK(list(maildir + "/new") == std::set<std::string>{a});
    auto report = box->commit({}, {0});
    REQUIRE(report.ok());
    CHECK(report->marked_seen == 1);
    CHECK(report->deleted == 0);
    CHECK(list(maildir + "/cur") == std::set<std::string>{a + ":2,S"});
    CHECK_FALSE(box->commit({}, {7}).ok());  // an index out of the snapshot
}

TEST_CASE("Maildir: files renamed or removed by another program after the snapshot") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    std::string a = put_maildir_file(maildir, "new", 1700000000, 1, 1, "a\n");
    std::string b = put_maildir_file(maildir, "new", 1700000000, 2, 2, "b\n");
    std::string c = put_maildir_file(maildir, "cur", 1700000000, 3, 3, "c\n", ":2,");
    std::string d = put_maildir_file(maildir, "new", 1700000000, 4, 4, "d\n");
    auto box = open_box(dir.path, Format::maildir);
    REQUIRE(box->count() == 4);

    // imapd flags a and c, and expunges b and d.
    REQUIRE(rename((maildir + "/new/" + a).c_str(), (maildir + "/cur/" + a + ":2,F").c_str()) == 0);
    REQUIRE(rename((maildir + "/cur/" + c).c_str(), (maildir + "/cur/" + c + "R").c_str()) == 0);
    REQUIRE(unlink((maildir + "/new/" + b).c_str()) == 0);
    REQUIRE(unlink((maildir + "/new/" + d).c_str()) == 0);

    CHECK(message_text(*box, 0) == "a\n");  // found again by its base name
    auto gone = box->open_message(1);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().find("removed") != std::string::npos);

    auto report = box->commit({1, 2}, {0, 3});
    REQUIRE(report.ok());
    CHECK(report->deleted == 1);       // c, under its new name
    CHECK(report->already_gone == 1);  // b
    CHECK(report->marked_seen == 1);   // a; d is gone and only to be marked: nothing
    CHECK(list(maildir + "/cur") == std::set<std::string>{a + ":2,FS"});
}

TEST_CASE("Maildir: mail delivered after the snapshot is untouched by commit and in the next snapshot") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(deliver_to_maildir(maildir, "h", source_from_string("first\n")).ok());
    auto box = open_box(dir.path, Format::maildir);
    REQUIRE(box->count() == 1);
    WriteOutcome late = deliver_to_maildir(maildir, "h", source_from_string("late\n"));
    REQUIRE(late.ok());
    CHECK(box->count() == 1);
    auto report = box->commit({0}, {});
    REQUIRE(report.ok());
    CHECK(report->deleted == 1);
    CHECK(exists(late.path));
    auto next = open_box(dir.path, Format::maildir);
    REQUIRE(next->count() == 1);
    CHECK(message_text(*next, 0) == "late\n");
}

TEST_CASE("Maildir: listing 2000 messages is fast, uses the names only and little memory") {
    test::TempDir dir;
    std::string maildir = maildir_path(dir.path);
    REQUIRE(create_maildir(maildir).ok());
    constexpr size_t kMessages = 2000;
    for (size_t i = 0; i < kMessages; ++i) {
        UniqueNameParts parts{1700000000 + static_cast<int64_t>(i), static_cast<long>(i * 7 % 1000000), 31337,
                              i + 1, "mx.example.test"};
        // W= deliberately not the file's size: a listing that read or
        // stat'ed the files could not report it.
        std::string name = delivered_name(format_unique_name(parts), 1000, 5000 + i);
        write_file(fmt::format("{}/{}/{}", maildir, i % 3 == 0 ? "cur" : "new", name + (i % 3 == 0 ? ":2,S" : "")),
                   "x\n");
    }
    int64_t before = live_heap_bytes.load();
    peak_heap_bytes = before;
    auto started = std::chrono::steady_clock::now();
    auto box = open_inbox(dir.path, Format::maildir);
    auto elapsed = std::chrono::steady_clock::now() - started;
    REQUIRE(box.ok());
    int64_t kept = live_heap_bytes.load() - before;
    int64_t peak = peak_heap_bytes.load() - before;
    REQUIRE((*box)->count() == kMessages);
    for (size_t i = 0; i < kMessages; ++i) {
        CHECK((*box)->size(i) == 5000 + i);
        CHECK((*box)->seen(i) == (i % 3 == 0));
    }
    WARN(fmt::format("Maildir listing of {} messages: {} ms, {} bytes kept ({:.1f} per message), peak {} bytes",
                     kMessages, std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), kept,
                     static_cast<double>(kept) / kMessages, peak));
    // Generous bounds (sanitizers slow everything): they only catch a
    // representation gone badly wrong, e.g. several strings per message.
    CHECK(kept < static_cast<int64_t>(kMessages * 160));
    CHECK(elapsed < std::chrono::seconds(20));
}

// ---------------------------------------------------------------- mbox

TEST_CASE("mbox: delivered messages read back unquoted with their exact served sizes") {
    test::TempDir dir;
    std::string mail_path = dir.file("example.test/bob");
    std::vector<std::string> messages = {
        "Subject: one\n\nFrom here\n>From there\n>>From far\n",
        "Subject: two\n\nno final newline",
        "Subject: three\n\n\nFrom \n\nFrom after an empty line\n\n",
        std::string("Subject: big\n\n") + std::string(200000, 'x') + "\nFrom x\n",
    };
    for (size_t i = 0; i < messages.size(); ++i)
        REQUIRE(deliver_to_mbox(mbox_path(mail_path), fmt::format("s{}@x", i), kTime, source_from_string(messages[i]))
                    .ok());
    auto box = open_box(mail_path, Format::mbox);
    REQUIRE(box->format() == Format::mbox);
    REQUIRE(box->count() == messages.size());
    size_t capacity = GENERATE(1, 7, 4096);
    for (size_t i = 0; i < messages.size(); ++i) {
        CAPTURE(i, capacity);
        std::string text = message_text(*box, i, capacity);
        CHECK(text == stored_form(messages[i], false));
        CHECK(box->size(i) == crlf(text).size());
        CHECK_FALSE(box->seen(i));
    }
    // The unique id: MD5 of the From_ line and the header.
    CHECK(box->uid(0) == md5_hex(from_line("s0@x", kTime) + "Subject: one\n"));
    auto again = open_box(mail_path, Format::mbox);
    for (size_t i = 0; i < messages.size(); ++i) CHECK(again->uid(i) == box->uid(i));
}

TEST_CASE("mbox: internal headers are left out, folded lines included, and Status R is \\Seen") {
    test::TempDir dir;
    std::string message =
        "Received: from a\n\tby b\n"
        "Status: O\n R\n"
        "X-UID: 12\n"
        "X-Keywords: $Label1\n  $Label2\n"
        "x-imapbase: 1 2\n"
        "X-IMAP: 3\n"
        "CONTENT-LENGTH : 99\n"
        "X-Status: A\n"
        "Subject: kept\n"
        "X-Status-Like: kept too\n"
        "Statusbar: kept\n"
        "\n"
        "Status: R is body text\n";
    write_file(mbox_path(dir.path), build_mbox({message, "Subject: plain\n\nx\n"}));
    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == 2);
    std::string expected =
        "Received: from a\n\tby b\nSubject: kept\nX-Status-Like: kept too\nStatusbar: kept\n\nStatus: R is body text\n";
    CHECK(message_text(*box, 0, 1) == expected);
    CHECK(message_text(*box, 0, 3) == expected);
    CHECK(box->size(0) == crlf(expected).size());
    CHECK(box->seen(0));  // the 'R' is on the folded line
    CHECK_FALSE(box->seen(1));
    CHECK(box->uid(0) ==
          md5_hex(from_line("sender0@example.test", kTime) +
                  "Received: from a\n\tby b\nSubject: kept\nX-Status-Like: kept too\nStatusbar: kept\n"));
}

TEST_CASE("mbox: files from other programs (garbage first, CRLF, no final empty line)") {
    test::TempDir dir;
    SECTION("leading garbage and an unterminated last message") {
        write_file(mbox_path(dir.path), "garbage line\nFrom nobody\n\nFrom a@b Thu Jan  1 00:00:00 1970\n"
                                        "Subject: a\n\nbody\nFrom not a separator\n\n"
                                        "From b@b Thu Jan  1 00:00:00 1970\nSubject: b\n\nlast");
        auto box = open_box(dir.path, Format::mbox);
        // "From nobody" is the first From_ line: garbage before it is skipped.
        REQUIRE(box->count() == 3);
        CHECK(message_text(*box, 0) == "");
        CHECK(message_text(*box, 1) == "Subject: a\n\nbody\nFrom not a separator\n");
        CHECK(message_text(*box, 2) == "Subject: b\n\nlast");
        CHECK(box->size(2) == crlf("Subject: b\n\nlast").size());
    }
    SECTION("CRLF line endings") {
        write_file(mbox_path(dir.path), "From a@b Thu Jan  1 00:00:00 1970\r\nSubject: a\r\nStatus: RO\r\n\r\nbody\r\n"
                                        ">From x\r\n\r\nFrom b@b Thu Jan  1 00:00:00 1970\r\nSubject: b\r\n\r\n");
        auto box = open_box(dir.path, Format::mbox);
        REQUIRE(box->count() == 2);
        CHECK(message_text(*box, 0) == "Subject: a\r\n\r\nbody\r\nFrom x\r\n");
        CHECK(box->size(0) == 28);
        CHECK(box->seen(0));
        CHECK(message_text(*box, 1) == "Subject: b\r\n");
    }
    SECTION("an empty file") {
        write_file(mbox_path(dir.path), "");
        CHECK(open_box(dir.path, Format::mbox)->count() == 0);
    }
    SECTION("only garbage") {
        write_file(mbox_path(dir.path), "no From_ line here\n\n");
        CHECK(open_box(dir.path, Format::mbox)->count() == 0);
    }
}

TEST_CASE("mbox: random messages — the scanned size is what the reader returns, at any read size") {
    auto seed = GENERATE(range(1, 31));
    std::mt19937 random(static_cast<uint32_t>(seed));
    auto pick = [&](size_t n) { return static_cast<size_t>(random() % n); };
    const std::vector<std::string> header_lines = {
        "Subject: hello\n", "From: a@example.test\n", "Status: O\n", "Status: RO\n", "status: O\n R\n",
        "Status: O\n\tO\n", "X-UID: 12\n 34\n", "X-Status: A\n", "Content-Length: 123\n", "X-Keywords: $x\n",
        "X-IMAPbase: 1 2\n", "X-IMAP: 1\n", "X-Statusy: R\n", "Received: from x\n\tby y\n", ">From header-ish\n",
        "From nothing\n", "Subject: crlf\r\n", "Status: R\r\n", "\rOdd: line\n",
    };
    const std::vector<std::string> body_lines = {
        "text\n", "\n", "From x\n", ">From y\n", ">>From z\n", "From\n", ">>>\n", "Fro\n", ">\n",
        "crlf\r\n", "\r\n", ">From crlf\r\n", "Status: R\n", std::string(9000, 'L') + "\n", "From ", ">>",
    };
    std::vector<std::string> messages;
    size_t count = 1 + pick(6);
    for (size_t m = 0; m < count; ++m) {
        std::string message;
        for (size_t h = pick(6); h > 0; --h) message += header_lines[pick(header_lines.size())];
        if (pick(5) != 0) {
            message += pick(4) == 0 ? "\r\n" : "\n";
            for (size_t b = pick(12); b > 0; --b) message += body_lines[pick(body_lines.size())];
        }
        if (pick(4) == 0 && !message.empty() && message.back() == '\n') message.pop_back();  // no final newline
        if (message.empty()) message = "X: y\n";
        messages.push_back(message);
    }
    // Only a message without a final newline can end the file without its
    // separator unambiguously.
    bool unterminated = pick(2) == 0 && messages.back().back() != '\n';
    test::TempDir dir;
    write_file(mbox_path(dir.path), build_mbox(messages, unterminated));
    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == messages.size());
    std::set<std::string> uids;
    for (size_t i = 0; i < messages.size(); ++i) {
        CAPTURE(seed, i, messages[i]);
        Expected expected = strip_internal(stored_form(messages[i], unterminated && i + 1 == messages.size()));
        for (size_t capacity : {size_t{1}, size_t{7}, size_t{4096}, size_t{100000}}) {
            std::string text = message_text(*box, i, capacity);
            CHECK(text == expected.content);
            CHECK(box->size(i) == crlf(text).size());
        }
        CHECK(box->seen(i) == expected.seen);
        CHECK(box->uid(i) == md5_hex(from_line(fmt::format("sender{}@example.test", i), kTime + static_cast<std::time_t>(i)) +
                                     expected.header));
        uids.insert(std::string(box->uid(i)));
    }
    CHECK(uids.size() == messages.size());
}

TEST_CASE("mbox: a 2000-message snapshot keeps little memory per message") {
    test::TempDir dir;
    constexpr size_t kMessages = 2000;
    std::string content;
    for (size_t i = 0; i < kMessages; ++i)
        content += from_line("a@example.test", kTime + static_cast<std::time_t>(i)) +
                   fmt::format("Subject: {}\nStatus: O\n\nbody {}\n\n", i, std::string(i % 300, 'b'));
    write_file(mbox_path(dir.path), content);
    int64_t before = live_heap_bytes.load();
    peak_heap_bytes = before;
    auto started = std::chrono::steady_clock::now();
    auto box = open_inbox(dir.path, Format::mbox);
    auto elapsed = std::chrono::steady_clock::now() - started;
    REQUIRE(box.ok());
    int64_t kept = live_heap_bytes.load() - before;
    int64_t peak = peak_heap_bytes.load() - before;
    REQUIRE((*box)->count() == kMessages);
    WARN(fmt::format("mbox snapshot of {} messages ({} bytes): {} ms, {} bytes kept ({:.1f} per message), peak {} bytes",
                     kMessages, content.size(),
                     std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), kept,
                     static_cast<double>(kept) / kMessages, peak));
    CHECK(kept < static_cast<int64_t>(kMessages * 160));
}

TEST_CASE("mbox parsing gives the same result however the bytes are split") {
    // Adversarial soup: every token the scanner and the filter decide on.
    const std::vector<std::string> tokens = {"From ", ">", ">>From ", "\n", "\r", "\r\n", "Status:", "status :",
                                             " ", "\t", "R", "X-UID:", "Content-Length:", "a", "Subject: x",
                                             "\n\n", "From a b\n"};
    auto seed = GENERATE(range(1, 201));
    std::mt19937 random(static_cast<uint32_t>(seed));
    std::string input = random() % 2 ? "From x\n" : "";
    for (size_t n = random() % 120; n > 0; --n) input += tokens[random() % tokens.size()];
    CAPTURE(seed, input);

    auto scan = [&](auto&& split) {
        std::string uids;
        std::vector<detail::MboxMessage> messages;
        detail::MboxScanner scanner(uids, messages);
        split(input, [&](std::string_view piece) { scanner.feed(piece); });
        REQUIRE(scanner.finish().ok());
        std::string summary = uids;
        for (const auto& m : messages)
            summary += fmt::format("|{},{},{},{},{},{},{}", m.from_offset, m.content_start, m.content_end,
                                   m.header_end, m.size, m.from_hash, m.seen);
        return summary;
    };
    auto filter = [&](auto&& split) {
        detail::MboxFilter mbox_filter;
        std::string out;
        split(input, [&](std::string_view piece) { mbox_filter.feed(piece, out); });
        mbox_filter.finish(out);
        return fmt::format("{}|{}|{}|{}", out, mbox_filter.seen(), mbox_filter.header_end(), mbox_filter.header_output());
    };
    auto whole = [](std::string_view text, auto&& sink) { sink(text); };
    auto bytewise = [](std::string_view text, auto&& sink) {
        for (size_t i = 0; i < text.size(); ++i) sink(text.substr(i, 1));
    };
    auto randomly = [&](std::string_view text, auto&& sink) {
        while (!text.empty()) {
            size_t n = std::min<size_t>(text.size(), 1 + random() % 9);
            sink(text.substr(0, n));
            text.remove_prefix(n);
        }
    };
    std::string scanned = scan(whole);
    CHECK(scan(bytewise) == scanned);
    CHECK(scan(randomly) == scanned);
    std::string filtered = filter(whole);
    CHECK(filter(bytewise) == filtered);
    CHECK(filter(randomly) == filtered);
}

TEST_CASE("mbox: identical From_ line and header get -2, -3 in file order") {
    test::TempDir dir;
    std::string one = from_line("a@b", kTime) + "Subject: same\n\nfirst\n\n";
    std::string two = from_line("a@b", kTime) + "Subject: same\nStatus: RO\n\nsecond, seen\n\n";
    std::string other = from_line("a@b", kTime) + "Subject: other\n\nx\n\n";
    write_file(mbox_path(dir.path), one + other + two + one);
    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == 4);
    std::string base = md5_hex(from_line("a@b", kTime) + "Subject: same\n");
    CHECK(box->uid(0) == base);
    CHECK(box->uid(1) != base);
    CHECK(box->uid(2) == base + "-2");
    CHECK(box->uid(3) == base + "-3");
    CHECK(box->seen(2));
}

TEST_CASE("mbox: commit deletes, writes Status: RO for newly seen, keeps the rest byte for byte") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.path);
    std::string a = from_line("a@x", kTime) + "Subject: a\n\nA\n\n";
    std::string b = from_line("b@x", kTime) + "Subject: b\nStatus: O\nX-UID: 3\n\nB\n>From quoted\n\n";
    std::string c = from_line("c@x", kTime) + "Subject: c\n\nC\n\n";
    std::string d = from_line("d@x", kTime) + "Subject: d\n\nD\n\n";
    std::string e = from_line("e@x", kTime) + "Subject: e\nstatus: O\n X\n\nE\n\n";
    std::string f = from_line("f@x", kTime) + "Subject: f\r\n\r\nF\r\n\r\n";
    write_file(mbox, a + b + c + d + e + f);
    struct stat before {};
    REQUIRE(stat(mbox.c_str(), &before) == 0);

    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == 6);
    std::vector<std::string> uids, texts;
    for (size_t i = 0; i < 6; ++i) {
        uids.emplace_back(box->uid(i));
        texts.push_back(message_text(*box, i));
    }
    auto report = box->commit({0, 3}, {1, 2, 3, 4, 5});
    REQUIRE(report.ok());
    CHECK(report->deleted == 2);
    CHECK(report->marked_seen == 4);
    CHECK(report->already_gone == 0);
    CHECK(read_file(mbox) == from_line("b@x", kTime) + "Subject: b\nStatus: RO\nX-UID: 3\n\nB\n>From quoted\n\n" +
                                 from_line("c@x", kTime) + "Subject: c\nStatus: RO\n\nC\n\n" +
                                 from_line("e@x", kTime) + "Subject: e\nStatus: ROX\n\nE\n\n" +
                                 from_line("f@x", kTime) + "Subject: f\r\nStatus: RO\r\n\r\nF\r\n\r\n");
    struct stat after {};
    REQUIRE(stat(mbox.c_str(), &after) == 0);
    CHECK(after.st_ino != before.st_ino);  // a new file renamed over the old
    CHECK((after.st_mode & 0777) == 0600);
    CHECK(list(dir.path) == std::set<std::string>{"mbox"});  // no tmp file, no dot-lock left

    // Same ids and contents, now \Seen.
    auto next = open_box(dir.path, Format::mbox);
    REQUIRE(next->count() == 4);
    size_t kept[] = {1, 2, 4, 5};
    for (size_t i = 0; i < 4; ++i) {
        CHECK(next->uid(i) == uids[kept[i]]);
        CHECK(message_text(*next, i) == texts[kept[i]]);
        CHECK(next->seen(i));
    }
    // A second commit of the same session is refused: its offsets are stale.
    CHECK_FALSE(box->commit({1}, {}).ok());
}

TEST_CASE("mbox: seen-only commit; nothing to change leaves the file alone") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.path);
    std::string content = from_line("a@x", kTime) + "Subject: a\nStatus: RO\n\nA\n\n" + from_line("b@x", kTime) +
                          "Subject: b\n\nB";  // no final newline
    write_file(mbox, content);
    struct stat before {};
    REQUIRE(stat(mbox.c_str(), &before) == 0);
    {
        auto box = open_box(dir.path, Format::mbox);
        auto report = box->commit({}, {0});  // already seen: nothing to do
        REQUIRE(report.ok());
        CHECK(report->marked_seen == 0);
        struct stat after {};
        REQUIRE(stat(mbox.c_str(), &after) == 0);
        CHECK(after.st_ino == before.st_ino);
        CHECK(read_file(mbox) == content);
    }
    auto box = open_box(dir.path, Format::mbox);
    auto report = box->commit({}, {1});
    REQUIRE(report.ok());
    CHECK(report->marked_seen == 1);
    CHECK(read_file(mbox) == from_line("a@x", kTime) + "Subject: a\nStatus: RO\n\nA\n\n" + from_line("b@x", kTime) +
                                 "Subject: b\nStatus: RO\n\nB\n\n");
}

TEST_CASE("mbox: mail delivered after the snapshot survives the commit and is in the next snapshot") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.path);
    REQUIRE(deliver_to_mbox(mbox, "a@x", kTime, source_from_string("Subject: a\n\nA\n")).ok());
    REQUIRE(deliver_to_mbox(mbox, "b@x", kTime, source_from_string("Subject: b\n\nB\n")).ok());
    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == 2);
    REQUIRE(deliver_to_mbox(mbox, "late@x", kTime, source_from_string("Subject: late\n\nFrom late\n")).ok());
    CHECK(box->count() == 2);
    auto report = box->commit({0}, {1});
    REQUIRE(report.ok());
    CHECK(report->deleted == 1);
    CHECK(report->marked_seen == 1);
    CHECK(read_file(mbox) == from_line("b@x", kTime) + "Subject: b\nStatus: RO\n\nB\n\n" + from_line("late@x", kTime) +
                                 "Subject: late\n\n>From late\n\n");
    auto next = open_box(dir.path, Format::mbox);
    REQUIRE(next->count() == 2);
    CHECK(next->seen(0));
    CHECK_FALSE(next->seen(1));
    CHECK(message_text(*next, 1) == "Subject: late\n\nFrom late\n");
    // And deliverd still appends to the file the commit put in place.
    REQUIRE(deliver_to_mbox(mbox, "c@x", kTime, source_from_string("Subject: c\n\nC\n")).ok());
    CHECK(open_box(dir.path, Format::mbox)->count() == 3);
}

TEST_CASE("mbox: commit refuses, changing nothing, when another program rewrote the mbox") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.path);
    std::string a = from_line("a@x", kTime) + "Subject: a\n\nA\n\n";
    std::string b = from_line("b@x", kTime) + "Subject: b\n\nB\n\n";
    write_file(mbox, a + b);
    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == 2);
    std::string rewritten;
    SECTION("a message expunged (the file shrank)") { rewritten = b; }
    SECTION("same size, From_ lines moved") {
        rewritten = from_line("a@x", kTime) + "Subject: a\n\nAAA\n\n" + from_line("b@x", kTime) + "Subject: b\n\n\n";
        REQUIRE(rewritten.size() == (a + b).size());
    }
    SECTION("another program's Status update by rename") {
        rewritten = from_line("a@x", kTime) + "Subject: a\nStatus: RO\n\nA\n\n" + b;
    }
    std::string replacement = dir.file("other.tmp");
    write_file(replacement, rewritten);
    REQUIRE(rename(replacement.c_str(), mbox.c_str()) == 0);
    auto report = box->commit({0}, {1});
    REQUIRE_FALSE(report.ok());
    CHECK(report.error().find("nothing changed") != std::string::npos);
    CHECK(read_file(mbox) == rewritten);
    CHECK(list(dir.path) == std::set<std::string>{"mbox"});
    // Messages of the snapshot are still read from the file it was taken of.
    CHECK(message_text(*box, 0) == "Subject: a\n\nA\n");
}

TEST_CASE("mbox: a failed commit removes its temporary file and leaves the mbox unchanged") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.path);
    std::string content;
    for (int i = 0; i < 4; ++i)
        content += from_line("a@x", kTime + i) + "Subject: s\n\n" + std::string(20000, 'a' + i) + "\n\n";
    write_file(mbox, content);
    auto box = open_box(dir.path, Format::mbox);
    REQUIRE(box->count() == 4);
    // RLIMIT_FSIZE makes the temporary file's write fail (EFBIG) like a full disk.
    struct sigaction ignore {}, previous {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(sigaction(SIGXFSZ, &ignore, &previous) == 0);
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit limited = saved;
    limited.rlim_cur = 30000;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    auto report = box->commit({0}, {1, 2, 3});
    setrlimit(RLIMIT_FSIZE, &saved);
    sigaction(SIGXFSZ, &previous, nullptr);
    REQUIRE_FALSE(report.ok());
    CHECK(read_file(mbox) == content);
    CHECK(list(dir.path) == std::set<std::string>{"mbox"});
    // Nothing was committed: the session may try again.
    auto retry = box->commit({0}, {});
    REQUIRE(retry.ok());
    CHECK(retry->deleted == 1);
}

TEST_CASE("mbox: a held lock makes open_inbox fail in time; a reader notices a file changed in place") {
    test::TempDir dir;
    std::string mbox = mbox_path(dir.path);
    write_file(mbox, from_line("a@x", kTime) + "Subject: a\n\nA\n\n");
    write_file(mbox + ".lock", "1\n");
    OpenOptions options;
    options.mbox_lock = quick_locks();
    auto locked = open_inbox(dir.path, Format::mbox, options);
    CHECK_FALSE(locked.ok());
    REQUIRE(unlink((mbox + ".lock").c_str()) == 0);

    auto box = open_box(dir.path, Format::mbox, options);
    REQUIRE(box->count() == 1);
    // Rewritten in place (no rename) with other bytes: the reader must not
    // serve bytes that do not match the size it announced.
    write_file(mbox, from_line("a@x", kTime) + "Subject: a\n\nAAAAAAAAAA\n\n");
    auto reader = box->open_message(0);
    REQUIRE(reader.ok());
    char buffer[4096];
    Result<size_t> got = size_t{1};
    while (got.ok() && *got > 0) got = (*reader)->read(buffer, sizeof buffer);
    CHECK_FALSE(got.ok());
}

// ---------------------------------------------------------------- session lock

TEST_CASE("one POP3 session per mailbox") {
    test::TempDir dir;
    std::string mail_path = dir.file("example.test/carol");
    auto first = SessionLock::try_acquire(mail_path);
    REQUIRE(first.ok());
    REQUIRE(first->has_value());
    struct stat info {};
    REQUIRE(stat(mail_path.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0700);
    REQUIRE(stat((mail_path + "/pop3.lock").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);

    auto second = SessionLock::try_acquire(mail_path);
    REQUIRE(second.ok());
    CHECK_FALSE(second->has_value());  // [IN-USE]

    // Moving the lock keeps it held.
    std::optional<SessionLock> moved = std::move(*first);
    first->reset();
    auto third = SessionLock::try_acquire(mail_path);
    REQUIRE(third.ok());
    CHECK_FALSE(third->has_value());

    moved.reset();
    auto fourth = SessionLock::try_acquire(mail_path);
    REQUIRE(fourth.ok());
    CHECK(fourth->has_value());
}

TEST_CASE("the session lock reports a path it cannot create") {
    test::TempDir dir;
    write_file(dir.file("file"), "x");
    auto lock = SessionLock::try_acquire(dir.file("file/sub"));
    CHECK_FALSE(lock.ok());
}
