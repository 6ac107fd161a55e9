// Unit tests for libmail/base64: RFC 4648 §10 vectors, strict rejection of
// malformed input, lenient decoding of MIME-style line-broken text.
#include <catch2/catch.hpp>

#include <string>

#include "libmail/base64.hpp"

using namespace facteur;

TEST_CASE("base64 RFC 4648 §10 test vectors") {
    auto [plain, encoded] = GENERATE(table<std::string, std::string>({
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    }));
    CHECK(base64::encode(plain) == encoded);
    auto decoded = base64::decode(encoded);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == plain);
    CHECK(base64::decode_lenient(encoded).value() == plain);
}

TEST_CASE("base64 round-trips every byte value") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (size_t length : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{255}, size_t{256}}) {
        std::string data = all.substr(0, length);
        std::string encoded = base64::encode(data);
        CHECK(encoded.size() == (length + 2) / 3 * 4);
        CHECK(base64::decode(encoded).value() == data);
    }
    // The SASL PLAIN message of RFC 4616 §4's example, NULs included.
    CHECK(base64::encode(std::string("\0tim\0tanstaaftanstaaf", 21)) == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
}

TEST_CASE("base64 strict decoding rejects malformed input") {
    auto bad = GENERATE(as<std::string>{},
                        "Zg=",        // length not a multiple of 4
                        "Zg",         // missing padding
                        "Z===",       // too much padding
                        "====",       // padding only
                        "Zm9v!A==",   // character outside the alphabet
                        "Zm9v-_==",   // base64url alphabet (RFC 4648 §5) is not base64
                        "Zg==Zg==",   // padding in the middle
                        "Zh==",       // non-zero pad bits (RFC 4648 §3.5)
                        "Zm9=",       // non-zero pad bits
                        "Zm=v",       // '=' followed by data
                        "Zm 9v",      // blank inside
                        "Zm9v\r\n",   // line break
                        std::string("Zm\0v", 4));
    INFO(bad);
    CHECK_FALSE(base64::decode(bad).has_value());
}

TEST_CASE("base64 lenient decoding skips line breaks and blanks only") {
    CHECK(base64::decode_lenient("Zm9v\r\nYmFy").value() == "foobar");
    CHECK(base64::decode_lenient(" Zm9v\tYmE=\r\n").value() == "fooba");
    CHECK(base64::decode_lenient("\r\n").value().empty());
    CHECK_FALSE(base64::decode_lenient("Zm9v\r\nYm!y").has_value());
    CHECK_FALSE(base64::decode_lenient("Zm9\r\nvYg=").has_value());  // 7 characters once compacted
    CHECK(base64::decode_lenient("Zm9v\r\nYg==\r\n").value() == "foob");
}
