// Unit tests for pop3d/encoder: CRLF conversion, byte-stuffing (RFC 1939 §3)
// across chunk boundaries, TOP (§7) with 0, 1 and many lines, messages
// without a final line end, and sizes equal to store::served_size.
#include <catch2/catch.hpp>

#include <string>

#include "libmail/mailbox.hpp"
#include "pop3d/encoder.hpp"

using namespace facteur;
using namespace facteur::pop3d;

namespace {

// The wire form of `stored`, fed `chunk` bytes at a time.
std::string encode(std::string_view stored, size_t chunk, std::optional<uint64_t> lines = std::nullopt) {
    Encoder encoder(lines);
    std::string out;
    for (size_t i = 0; i < stored.size() && !encoder.done(); i += chunk) encoder.feed(stored.substr(i, chunk), out);
    encoder.finish(out);
    return out;
}

// What a client gets back after undoing the stuffing and removing the
// terminator (RFC 1939 §3), for the round-trip checks.
std::string unstuff(std::string_view wire) {
    REQUIRE(wire.size() >= 3);
    REQUIRE(wire.substr(wire.size() - 3) == ".\r\n");
    wire.remove_suffix(3);
    std::string out;
    while (!wire.empty()) {
        size_t end = wire.find("\r\n");
        REQUIRE(end != std::string_view::npos);  // every line ends in CRLF before the terminator
        std::string_view line = wire.substr(0, end);
        if (!line.empty() && line[0] == '.') {
            REQUIRE(line.size() >= 2);  // a lone "." would end the response
            line.remove_prefix(1);
        }
        out.append(line);
        out += "\r\n";
        wire.remove_prefix(end + 2);
    }
    return out;
}

}  // namespace

TEST_CASE("pop3 encoder: LF becomes CRLF and the terminator follows") {
    auto [stored, wire] = GENERATE(table<std::string, std::string>({
        {"a\nb\n", "a\r\nb\r\n.\r\n"},
        {"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},      // CRLF already there: kept
        {"a\r\nb\n", "a\r\nb\r\n.\r\n"},        // mixed
        {"abc", "abc\r\n.\r\n"},                // no final line end: one is added before "."
        {"a\nbc", "a\r\nbc\r\n.\r\n"},
        {"", ".\r\n"},                          // empty message
        {"\n", "\r\n.\r\n"},
        {"a\rb\n", "a\rb\r\n.\r\n"},            // a bare CR is data
        {"a\r", "a\r\r\n.\r\n"},
        {"\n\n\n", "\r\n\r\n\r\n.\r\n"},
    }));
    INFO(stored);
    CHECK(encode(stored, stored.size() + 1) == wire);
    CHECK(encode(stored, 1) == wire);
}

TEST_CASE("pop3 encoder: lines starting with '.' are byte-stuffed (RFC 1939 §3)") {
    auto [stored, wire] = GENERATE(table<std::string, std::string>({
        {".\n", "..\r\n.\r\n"},
        {".x\n..y\nz.\n", "..x\r\n...y\r\nz.\r\n.\r\n"},
        {"a\n.", "a\r\n..\r\n.\r\n"},
        {"a\r\n.\r\n", "a\r\n..\r\n.\r\n"},
        {".", "..\r\n.\r\n"},
        {"a.b\n", "a.b\r\n.\r\n"},  // a dot inside a line is left alone
    }));
    INFO(stored);
    for (size_t chunk : {size_t(1), size_t(2), size_t(3), stored.size() + 1}) CHECK(encode(stored, chunk) == wire);
}

TEST_CASE("pop3 encoder: every split of a message gives the same bytes") {
    const std::string stored =
        "From: a@example.test\nSubject: dots\r\n\n.\n..two\r\n.three\nplain\n\r\n.\rx\nlast line without end.";
    const std::string whole = encode(stored, stored.size());
    // Every split point into two chunks, then every chunk size.
    for (size_t split = 0; split <= stored.size(); ++split) {
        Encoder encoder;
        std::string out;
        encoder.feed(std::string_view(stored).substr(0, split), out);
        encoder.feed(std::string_view(stored).substr(split), out);
        encoder.finish(out);
        INFO("split at " << split);
        CHECK(out == whole);
    }
    for (size_t chunk = 1; chunk <= stored.size(); ++chunk) {
        INFO("chunk " << chunk);
        CHECK(encode(stored, chunk) == whole);
    }
}

TEST_CASE("pop3 encoder: content bytes equal store::served_size (the size LIST and RETR announce)") {
    auto stored = GENERATE(as<std::string>{}, "", "a", "a\n", "a\r\n", "a\rb", ".\n..\n", "x\r", "\r\n\n\r\r\n",
                           "Subject: s\n\n.body\nno end", std::string(100000, 'x') + "\n.\n");
    for (size_t chunk : {size_t(1), size_t(7), size_t(65536)}) {
        if (chunk == 1 && stored.size() > 1000) continue;
        Encoder encoder;
        std::string out;
        for (size_t i = 0; i < stored.size(); i += chunk) encoder.feed(std::string_view(stored).substr(i, chunk), out);
        INFO("stored size " << stored.size() << " chunk " << chunk);
        CHECK(encoder.content_bytes() == store::served_size(stored));
        store::ServedSizeCounter counter;
        counter.feed(stored);
        CHECK(encoder.content_bytes() == counter.size());
    }
}

TEST_CASE("pop3 encoder: TOP sends the header, the empty line and n body lines (RFC 1939 §7)") {
    const std::string stored = "From: a@example.test\nSubject: hi\n\nline 1\n.line 2\nline 3\n";
    const std::string header = "From: a@example.test\r\nSubject: hi\r\n\r\n";
    auto [lines, wire] = GENERATE_REF(table<uint64_t, std::string>({
        {0, header + ".\r\n"},
        {1, header + "line 1\r\n.\r\n"},
        {2, header + "line 1\r\n..line 2\r\n.\r\n"},
        {3, header + "line 1\r\n..line 2\r\nline 3\r\n.\r\n"},
        {50, header + "line 1\r\n..line 2\r\nline 3\r\n.\r\n"},  // more than there are
    }));
    INFO("TOP n " << lines);
    for (size_t chunk : {size_t(1), size_t(5), stored.size()}) CHECK(encode(stored, chunk, lines) == wire);
}

TEST_CASE("pop3 encoder: TOP with CRLF, without a body, without a final line end") {
    CHECK(encode("A: 1\r\n\r\nb1\r\nb2\r\n", 1, 1) == "A: 1\r\n\r\nb1\r\n.\r\n");
    CHECK(encode("A: 1\r\n\r\nb1\r\nb2\r\n", 100, 0) == "A: 1\r\n\r\n.\r\n");
    // No empty line: the whole message is header.
    CHECK(encode("A: 1\nB: 2\n", 3, 0) == "A: 1\r\nB: 2\r\n.\r\n");
    CHECK(encode("A: 1\nB: 2", 100, 0) == "A: 1\r\nB: 2\r\n.\r\n");
    // The last body line has no line end.
    CHECK(encode("A: 1\n\nb1\nb2", 2, 5) == "A: 1\r\n\r\nb1\r\nb2\r\n.\r\n");
    // An empty first line: no header at all.
    CHECK(encode("\nbody\nmore\n", 1, 1) == "\r\nbody\r\n.\r\n");
    // A header line holding only a CR (not CRLF) does not end the header.
    CHECK(encode("A: 1\n\r\nb\n", 1, 0) == "A: 1\r\n\r\n.\r\n");
    CHECK(encode("A: 1\n\rx\n\nb\n", 1, 0) == "A: 1\r\n\rx\r\n\r\n.\r\n");
}

TEST_CASE("pop3 encoder: TOP is done early and ignores the rest") {
    Encoder encoder(1);
    std::string out;
    encoder.feed("H: v\n\nfirst\nsecond\n", out);
    CHECK(encoder.done());
    encoder.feed("more\n", out);
    encoder.finish(out);
    CHECK(out == "H: v\r\n\r\nfirst\r\n.\r\n");
    CHECK(encoder.content_bytes() == std::string("H: v\r\n\r\nfirst\r\n").size());
}

TEST_CASE("pop3 encoder: what the client unstuffs is the served message") {
    const std::string stored = "S: x\n\n.\n..\n...a\nb\n.";
    std::string wire = encode(stored, 3);
    std::string served = unstuff(wire);
    CHECK(served == "S: x\r\n\r\n.\r\n..\r\n...a\r\nb\r\n.\r\n");
}
