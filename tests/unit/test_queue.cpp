// Queue ids, spool folders, queue files and status logs (DESIGN §3).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <thread>

#include "libmail/queue.hpp"
#include "tests/unit/test_support.hpp"

using namespace facteur;
using namespace facteur::queue;

namespace {

Envelope sample_envelope() {
    Envelope envelope;
    envelope.sender = "alice@example.test";
    envelope.recipients = {{"bob@example.test", "rfc822;bob@example.test", notify_success | notify_failure},
                           {"carol\r\nX: y@example.test", "", notify_default}};
    envelope.envid = "abc\0def";
    envelope.ret = Ret::headers;
    envelope.body = BodyType::eight_bit_mime;
    envelope.smtputf8 = true;
    envelope.arrival_time = 1795000000;
    envelope.client_address = "127.0.0.1";
    envelope.client_helo = "client.test";
    envelope.protocol = "ESMTPS";
    envelope.auth_user = "alice@example.test";
    return envelope;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, std::string_view data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

}  // namespace

TEST_CASE("queue ids are unique, valid, sorted by time and carry their time") {
    std::vector<std::string> ids;
    for (int i = 0; i < 5000; ++i) ids.push_back(new_queue_id());
    std::set<std::string> unique(ids.begin(), ids.end());
    CHECK(unique.size() == ids.size());
    CHECK(std::is_sorted(ids.begin(), ids.end()));
    for (const auto& id : ids) REQUIRE(valid_queue_id(id));
    int64_t now = time(nullptr);
    CHECK(std::abs(queue_id_time(ids.front()) - now) <= 2);
    CHECK_FALSE(valid_queue_id(""));
    CHECK_FALSE(valid_queue_id("../../etc/passwd"));
    CHECK_FALSE(valid_queue_id(std::string(kQueueIdLength, 'W')));
    CHECK_FALSE(valid_queue_id(ids.front() + "0"));
}

TEST_CASE("queue ids from several threads never collide") {
    std::vector<std::vector<std::string>> per_thread(4);
    std::vector<std::thread> threads;
    for (auto& list : per_thread)
        threads.emplace_back([&list] {
            for (int i = 0; i < 2000; ++i) list.push_back(new_queue_id());
        });
    for (auto& t : threads) t.join();
    std::set<std::string> all;
    for (auto& list : per_thread) all.insert(list.begin(), list.end());
    CHECK(all.size() == 8000);
}

TEST_CASE("envelope encoding round-trips binary-safe values") {
    Envelope envelope = sample_envelope();
    envelope.queue_id = new_queue_id();
    envelope.envid = std::string("abc\0def", 7);
    auto decoded = decode_envelope(encode_envelope(envelope));
    REQUIRE(decoded);
    CHECK(decoded->sender == envelope.sender);
    REQUIRE(decoded->recipients.size() == 2);
    CHECK(decoded->recipients[1].address == "carol\r\nX: y@example.test");
    CHECK(decoded->recipients[0].orcpt == "rfc822;bob@example.test");
    CHECK(decoded->recipients[0].notify == (notify_success | notify_failure));
    CHECK(decoded->envid == envelope.envid);
    CHECK(decoded->ret == Ret::headers);
    CHECK(decoded->body == BodyType::eight_bit_mime);
    CHECK(decoded->smtputf8);
    CHECK(decoded->arrival_time == 1795000000);
    CHECK(decoded->protocol == "ESMTPS");
    CHECK_FALSE(decode_envelope("garbage"));
    CHECK_FALSE(decode_envelope(""));
}

TEST_CASE("a queue file is written, committed durably and read back") {
    test::TempDir dir;
    Spool spool(dir.path);
    REQUIRE(spool.create_folders());
    struct stat info {};
    REQUIRE(stat(spool.folder_path(Folder::maildrop).c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 01733);

    std::string id = new_queue_id();
    auto writer = Writer::create(spool, Folder::incoming, id);
    REQUIRE(writer);
    std::string big(3 * kMaxChunk + 17, 'x');
    std::string message = "Subject: hi\r\n\r\nbody\r\n" + big;
    REQUIRE(writer->append(message.substr(0, 10)));
    REQUIRE(writer->append(message.substr(10)));
    CHECK(access(spool.file_path(Folder::tmp, id).c_str(), F_OK) == 0);
    CHECK(access(spool.file_path(Folder::incoming, id).c_str(), F_OK) != 0);
    REQUIRE(writer->commit(sample_envelope()));
    CHECK(access(spool.file_path(Folder::tmp, id).c_str(), F_OK) != 0);
    CHECK(spool.locate(id) == Folder::incoming);

    auto reader = Reader::open(spool.file_path(Folder::incoming, id));
    REQUIRE(reader);
    CHECK(reader->envelope().queue_id == id);
    CHECK(reader->envelope().message_size == message.size());
    auto read = reader->message();
    REQUIRE(read);
    CHECK(*read == message);
    auto prefix = reader->message_prefix(13);
    REQUIRE(prefix);
    CHECK(*prefix == "Subject: hi\r\n");

    auto listed = spool.list(Folder::incoming);
    REQUIRE(listed);
    CHECK(*listed == std::vector<std::string>{id});

    REQUIRE(spool.move(id, Folder::incoming, Folder::deferred));
    CHECK(spool.locate(id) == Folder::deferred);
    CHECK(spool.file_path(Folder::deferred, id).find("/deferred/" + std::string(1, id.back()) + "/") != std::string::npos);
    auto deferred = spool.list(Folder::deferred);
    REQUIRE(deferred);
    CHECK(deferred->size() == 1);
}

TEST_CASE("an uncommitted writer leaves nothing behind") {
    test::TempDir dir;
    Spool spool(dir.path);
    REQUIRE(spool.create_folders());
    std::string id = new_queue_id();
    {
        auto writer = Writer::create(spool, Folder::incoming, id);
        REQUIRE(writer);
        REQUIRE(writer->append("data"));
    }
    CHECK(access(spool.file_path(Folder::tmp, id).c_str(), F_OK) != 0);
    auto writer = Writer::create(spool, Folder::maildrop, new_queue_id(), 0644);
    REQUIRE(writer);
    REQUIRE(writer->append("Subject: x\r\n\r\n"));
    REQUIRE(writer->commit(sample_envelope()));
    auto listed = spool.list(Folder::maildrop);
    REQUIRE(listed);
    CHECK(listed->size() == 1);
}

TEST_CASE("damaged queue files are refused, never half-read") {
    test::TempDir dir;
    Spool spool(dir.path);
    REQUIRE(spool.create_folders());
    std::string id = new_queue_id();
    auto writer = Writer::create(spool, Folder::incoming, id);
    REQUIRE(writer);
    REQUIRE(writer->append("Subject: x\r\n\r\nhello\r\n"));
    REQUIRE(writer->commit(sample_envelope()));
    std::string path = spool.file_path(Folder::incoming, id);
    std::string good = read_file(path);

    auto variant = GENERATE(as<std::string>{}, "truncated", "no-end", "trailing", "unknown", "bad-size", "empty",
                            "flipped-version");
    std::string bad = good;
    if (variant == "truncated") bad = good.substr(0, good.size() / 2);
    if (variant == "no-end") bad = good.substr(0, good.size() - 13);
    if (variant == "trailing") bad = good + "X";
    if (variant == "unknown") bad = good.substr(0, 6) + std::string("Q\0\0\0\0", 5) + good.substr(6);
    if (variant == "bad-size") bad[bad.size() - 1] ^= 1;
    if (variant == "empty") bad.clear();
    if (variant == "flipped-version") bad[5] = '2';
    write_file(path, bad);
    auto reader = Reader::open(path);
    CHECK_FALSE(reader);
    if (!reader) INFO(reader.error());
}

TEST_CASE("status log lines parse back; torn lines and final outcomes are safe") {
    RecipientStatus sent{RecipientState::sent, 100, "2.0.0", "delivered to maildir", 0, "", false};
    RecipientStatus deferred{RecipientState::deferred, 90, "4.2.2", "mailbox full\r\nr 1 sent 1 2.0.0 forged", 0, "", false};
    std::string text = format_recipient_line(1, deferred) + format_recipient_line(0, sent) + "n 500\n" +
                       format_recipient_line(0, deferred) + "b\n" + "r 1 sent 5 2.0.0 torn";
    StatusLog log = parse_status_log(text, 2);
    CHECK(log.recipients[0].state == RecipientState::sent);  // not undone by the later deferral
    CHECK(log.recipients[0].dsn == "2.0.0");
    CHECK(log.recipients[1].state == RecipientState::deferred);
    CHECK(log.recipients[1].reason.find("forged") != std::string::npos);  // CR/LF flattened into the reason
    CHECK(log.next_attempt == 500);
    CHECK(log.bounce_queued);
    CHECK_FALSE(log.all_done());
    CHECK(parse_status_log("r 7 sent 1 2.0.0 x\nr x y\n", 2).recipients[0].state == RecipientState::pending);

    test::TempDir dir;
    Spool spool(dir.path);
    REQUIRE(spool.create_folders());
    std::string id = new_queue_id();
    auto empty = read_status_log(spool, id, 1);
    REQUIRE(empty);
    CHECK(empty->recipients[0].state == RecipientState::pending);
    write_file(spool.log_path(id), "r 0 sen");  // a crash mid-append
    REQUIRE(append_status_log(spool, id, format_recipient_line(0, sent)));
    auto after = read_status_log(spool, id, 1);
    REQUIRE(after);
    CHECK(after->recipients[0].state == RecipientState::sent);
    CHECK(after->all_done());
}

TEST_CASE("status log: relayd outcomes keep the relay and the remote DSN flag; old logs still parse") {
    RecipientStatus relayed{RecipientState::sent, 200, "2.0.0", "250 2.0.0 Ok: queued as X", 0, "mx.example.org[192.0.2.1]:25",
                            false};
    RecipientStatus handed{RecipientState::sent, 201, "2.0.0", "250 ok", 0, "mx.example.org[192.0.2.1]:25", true};
    RecipientStatus refused{RecipientState::bounced, 202, "5.1.1", "550 5.1.1 <bob@example.org>: no such user", 0,
                            "mx two[192.0.2.2]:25", false};
    CHECK(format_recipient_line(0, relayed) ==
          "x 0 sent 200 2.0.0 mx.example.org[192.0.2.1]:25 n 250 2.0.0 Ok: queued as X\n");
    // Local outcomes keep the original line format.
    RecipientStatus local{RecipientState::sent, 5, "2.0.0", "delivered to maildir", 0, "", false};
    CHECK(format_recipient_line(3, local) == "r 3 sent 5 2.0.0 delivered to maildir\n");

    std::string text = format_recipient_line(0, relayed) + format_recipient_line(1, handed) +
                       format_recipient_line(2, refused) + "w\n";
    StatusLog log = parse_status_log(text, 3);
    CHECK(log.recipients[0].relay == "mx.example.org[192.0.2.1]:25");
    CHECK_FALSE(log.recipients[0].remote_dsn);
    CHECK(log.recipients[0].reason == "250 2.0.0 Ok: queued as X");
    CHECK(log.recipients[1].remote_dsn);
    CHECK(log.recipients[2].state == RecipientState::bounced);
    CHECK(log.recipients[2].relay == "mx_two[192.0.2.2]:25");  // a space cannot split the fields
    CHECK(log.recipients[2].reason == "550 5.1.1 <bob@example.org>: no such user");
    CHECK(log.delay_warned);
    CHECK_FALSE(log.bounce_queued);
    CHECK(log.all_done());

    // A log from before "x" and "w": same results as always, no relay.
    StatusLog old = parse_status_log("r 0 deferred 10 4.4.1 no route\nn 70\nr 0 sent 80 2.0.0 ok\nb\n", 1);
    CHECK(old.recipients[0].state == RecipientState::sent);
    CHECK(old.recipients[0].relay.empty());
    CHECK_FALSE(old.recipients[0].remote_dsn);
    CHECK(old.recipients[0].attempts == 2);
    CHECK_FALSE(old.delay_warned);
    CHECK(old.bounce_queued);

    // Malformed "x" lines are skipped like malformed "r" lines.
    StatusLog bad = parse_status_log("x 0 sent 1 2.0.0 relay maybe text\nx 0 sent 1 2.0.0\n", 1);
    CHECK(bad.recipients[0].state == RecipientState::pending);
}
