// sendmail's input: line endings made CRLF, the "." line, and the header
// split from the body, whatever the chunk boundaries.
#include <catch2/catch.hpp>

#include "sendmail/message_input.hpp"

using namespace facteur;
using namespace facteur::sendmail;

namespace {

struct Normalized {
    std::string text;
    bool ended = false;
};

// Feeds `input` in pieces of `step` bytes, so every boundary is crossed.
Normalized normalize(std::string_view input, bool ignore_dots, size_t step) {
    LineNormalizer normalizer(ignore_dots);
    Normalized out;
    for (size_t position = 0; position < input.size() && !out.ended; position += step)
        out.ended = normalizer.feed(input.substr(position, step), out.text);
    if (!out.ended) normalizer.finish(out.text);
    out.ended = normalizer.ended();
    return out;
}

}  // namespace

TEST_CASE("line endings become CRLF", "[sendmail][input]") {
    auto [input, expected] = GENERATE(table<std::string, std::string>({
        {"", ""},
        {"a\n", "a\r\n"},
        {"a\r\n", "a\r\n"},
        {"a\r", "a\r\n"},
        {"a", "a\r\n"},
        {"a\nb\n", "a\r\nb\r\n"},
        {"a\rb\r", "a\r\nb\r\n"},
        {"a\r\rb", "a\r\n\r\nb\r\n"},
        {"a\n\rb", "a\r\n\r\nb\r\n"},
        {"a\r\n\r\nb", "a\r\n\r\nb\r\n"},
        {"\n\n", "\r\n\r\n"},
        {"tab\there\x01\n", "tab\there\x01\r\n"},
        {std::string("nul\0byte\n", 9), std::string("nul\0byte\r\n", 10)},
        {"8bit caf\xc3\xa9\n", "8bit caf\xc3\xa9\r\n"},
    }));
    for (size_t step : {size_t{1}, size_t{2}, size_t{3}, size_t{64}}) {
        INFO("step " << step);
        for (bool ignore_dots : {false, true}) {
            Normalized out = normalize(input, ignore_dots, step);
            CHECK(out.text == expected);
            CHECK_FALSE(out.ended);
        }
    }
}

TEST_CASE("a line with only a dot ends the input unless -i", "[sendmail][input]") {
    auto [input, with_dots, with_i] = GENERATE(table<std::string, std::string, std::string>({
        // input, without -i, with -i
        {"a\n.\nb\n", "a\r\n", "a\r\n.\r\nb\r\n"},
        {"a\r\n.\r\nb\r\n", "a\r\n", "a\r\n.\r\nb\r\n"},
        {"a\r.\rb", "a\r\n", "a\r\n.\r\nb\r\n"},
        {"a\n.", "a\r\n", "a\r\n.\r\n"},
        {".\n", "", ".\r\n"},
        {"a\n..\nb\n", "a\r\n..\r\nb\r\n", "a\r\n..\r\nb\r\n"},
        {"a\n.b\n", "a\r\n.b\r\n", "a\r\n.b\r\n"},
        {"a\n. \n", "a\r\n. \r\n", "a\r\n. \r\n"},
        {"a.\nb\n", "a.\r\nb\r\n", "a.\r\nb\r\n"},
        {"x\n.\n.\n", "x\r\n", "x\r\n.\r\n.\r\n"},
    }));
    for (size_t step : {size_t{1}, size_t{2}, size_t{64}}) {
        INFO("step " << step << " input " << input);
        CHECK(normalize(input, false, step).text == with_dots);
        CHECK(normalize(input, true, step).text == with_i);
        CHECK_FALSE(normalize(input, true, step).ended);
    }
}

TEST_CASE("input after the dot line is ignored", "[sendmail][input]") {
    LineNormalizer normalizer(false);
    std::string out;
    CHECK(normalizer.feed("a\n.\n", out));
    CHECK(normalizer.feed("more\n", out));
    normalizer.finish(out);
    CHECK(out == "a\r\n");
    CHECK(normalizer.ended());
}

namespace {

struct Split {
    std::string header, body;
    bool separator = false;
};

Result<Split> split(std::string_view text, size_t step, size_t max_header = 1 << 20) {
    HeaderSplitter splitter(max_header);
    Split out;
    for (size_t position = 0; position < text.size(); position += step) {
        if (Status s = splitter.feed(text.substr(position, step)); !s) return make_error(s.error());
        out.body += splitter.take_body();
    }
    splitter.finish();
    out.body += splitter.take_body();
    REQUIRE(splitter.header_complete());
    out.header = splitter.header();
    out.separator = splitter.had_separator();
    return out;
}

}  // namespace

TEST_CASE("the header is split from the body", "[sendmail][input]") {
    auto [text, header, body, separator] = GENERATE(table<std::string, std::string, std::string, bool>({
        {"Subject: hi\r\n\r\nbody\r\n", "Subject: hi\r\n", "body\r\n", true},
        {"Subject: hi\r\n folded\r\nTo: a@b\r\n\r\n", "Subject: hi\r\n folded\r\nTo: a@b\r\n", "", true},
        {"Subject: hi\r\n", "Subject: hi\r\n", "", false},
        {"", "", "", false},
        {"\r\nbody only\r\n", "", "body only\r\n", true},
        // A line that is not a field ends the header and starts the body.
        {"Subject: hi\r\nnot a header\r\nmore\r\n", "Subject: hi\r\n", "not a header\r\nmore\r\n", false},
        {"just text\r\n", "", "just text\r\n", false},
        // A continuation line needs a field before it.
        {" indented\r\n", "", " indented\r\n", false},
        // obs-optional whitespace before the colon (RFC 5322 §4.5.3).
        {"Subject : hi\r\n\r\nb\r\n", "Subject : hi\r\n", "b\r\n", true},
        // The Unix From line of an mbox is dropped.
        {"From alice Mon Nov 23 10:00:00 2026\r\nSubject: x\r\n\r\nb\r\n", "Subject: x\r\n", "b\r\n", true},
        // Only first: a later "From " line is body.
        {"Subject: x\r\nFrom me\r\n", "Subject: x\r\n", "From me\r\n", false},
        {"Subject: x\r\n\r\n\r\nblank first\r\n", "Subject: x\r\n", "\r\nblank first\r\n", true},
    }));
    for (size_t step : {size_t{1}, size_t{5}, size_t{4096}}) {
        INFO("step " << step << " text " << text);
        auto out = split(text, step);
        REQUIRE(out);
        CHECK(out->header == header);
        CHECK(out->body == body);
        CHECK(out->separator == separator);
    }
}

TEST_CASE("an oversized header is refused", "[sendmail][input]") {
    std::string text;
    for (int i = 0; i < 100; ++i) text += "X-Filler: " + std::string(50, 'x') + "\r\n";
    text += "\r\nbody\r\n";
    CHECK_FALSE(split(text, 4096, 1000));
    CHECK(split(text, 4096, 100000));
    // One endless line without CRLF is bounded too.
    HeaderSplitter splitter(1000);
    CHECK_FALSE(splitter.feed("Subject: " + std::string(2000, 'y')));
}

TEST_CASE("header field lines", "[sendmail][input]") {
    CHECK(is_header_field_line("To: a@b"));
    CHECK(is_header_field_line("X-Empty:"));
    CHECK(is_header_field_line("Obs \t: x"));
    CHECK_FALSE(is_header_field_line(": no name"));
    CHECK_FALSE(is_header_field_line("no colon"));
    CHECK_FALSE(is_header_field_line("two words: x"));
    CHECK_FALSE(is_header_field_line(" leading: x"));
    CHECK_FALSE(is_header_field_line("caf\xc3\xa9: x"));
}
