// tests/test_dataset.cpp: the strict CSV reader, the EyePACS / APTOS / IDRiD / folder loaders and
// format detection, label schemes, patient-grouped stratified splits, nested label fractions, split
// files, and the real EyePACS and IDRiD label files (skipped where ../shared/data/fundus is absent).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/data/csv.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/split.hpp"
#include "test_support.hpp"

namespace fovea::data {
namespace {

using fovea::testing::error_of;

namespace fs = std::filesystem;
using ::fovea::testing::fundus_dir;
using TempDir = ::fovea::testing::TempDir;

// Passes when `text` contains `part`; prints both otherwise.
::testing::AssertionResult contains(const char*, const char*, const std::string& text,
                                    const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "'\n  does not contain\n'" << part << "'";
}
#define EXPECT_CONTAINS(text, part) EXPECT_PRED_FORMAT2(contains, text, part)


void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}
void touch(const fs::path& path) { write_text(path, ""); }

// ---- CSV ----------------------------------------------------------------------------------------

TEST(Csv, QuotingCrlfAndBom) {
  const std::string text =
      "\xEF\xBB\xBFname,note,n\r\n"
      "a,\"x, y\",1\r\n"
      "\"b\"\"q\",\"two\nlines\",2\r\n"
      "\r\n"
      "c,,3";  // no final line end
  const CsvTable t = parse_csv(text, "t.csv");
  ASSERT_EQ(t.header, (std::vector<std::string>{"name", "note", "n"}));
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"a", "x, y", "1"}));
  EXPECT_EQ(t.rows[1], (std::vector<std::string>{"b\"q", "two\nlines", "2"}));
  EXPECT_EQ(t.rows[2], (std::vector<std::string>{"c", "", "3"}));
  EXPECT_EQ(t.lines, (std::vector<int>{2, 3, 6}));  // the quoted line break counts, the blank line is skipped
  EXPECT_EQ(t.integer(2, t.require_column("n"), 0, 4), 3);
}

TEST(Csv, FormatRoundTrips) {
  const std::vector<std::string> header{"image", "split"};
  const std::vector<std::vector<std::string>> rows{
      {"plain", "train"}, {"with,comma", "te\"st"}, {" padded ", "multi\r\nline"}, {"", "x"}};
  const CsvTable t = parse_csv(format_csv(header, rows), "rt.csv");
  EXPECT_EQ(t.header, header);
  EXPECT_EQ(t.rows, rows);
}

TEST(Csv, NumbersAreReadWholeAndOwnHeadersExactly) {
  const CsvTable t = parse_csv("name,x\na,0.25\nb, -1e-3 \nc,nan\nd,inf\ne,-inf\nf,+2\n", "n.csv");
  EXPECT_EQ(t.real(0, 1), 0.25);
  EXPECT_EQ(t.real(1, 1), -1e-3);
  EXPECT_TRUE(std::isnan(t.real(2, 1)));
  EXPECT_EQ(t.real(3, 1), std::numeric_limits<double>::infinity());
  EXPECT_EQ(t.real(4, 1), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(t.real(5, 1), 2.0);
  // csv_row writes what real reads back, to the last bit
  const double v = 0.1 + 0.2;
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  EXPECT_EQ(parse_csv("x\n" + csv_row({std::string_view(buf, static_cast<std::size_t>(end - buf))}), "r.csv")
                .real(0, 0),
            v);
  for (const char* bad : {"0.5x", "", "1,5", "0x10", "--1", "1e", "."}) {
    const CsvTable u = parse_csv("name,x\na," + csv_field(bad) + "\n", "u.csv");
    EXPECT_CONTAINS(error_of([&] { u.real(0, 1); }),
                    "u.csv:2: field 'x' is '" + std::string(bad) + "', not a number")
        << bad;
  }
  EXPECT_NO_THROW(t.require_header("name,x"));
  EXPECT_CONTAINS(error_of([&] { t.require_header("name,y"); }),
                  "n.csv: header is 'name,x', expected 'name,y'");
  EXPECT_EQ(csv_row({"a", "b,c", "d\"e", " f"}), "a,\"b,c\",\"d\"\"e\",\" f\"");
}

TEST(Dataset, FileNameOfIdIsOneDistinctFileName) {
  EXPECT_EQ(file_name_of_id("IDRiD_01"), "IDRiD_01");
  EXPECT_EQ(file_name_of_id("0/abc"), "0%2Fabc");
  EXPECT_EQ(file_name_of_id("a\\b%c"), "a%5Cb%25c");
  EXPECT_EQ(file_name_of_id("left, \"1\""), "left, \"1\"");
  EXPECT_EQ(file_name_of_id(".."), "%2E.");
  EXPECT_EQ(file_name_of_id(".hidden/x"), "%2Ehidden%2Fx");
  EXPECT_EQ(file_name_of_id(std::string("a\nb\0c", 5)), "a%0Ab%00c");
  EXPECT_EQ(file_name_of_id(""), "%");
  // distinct ids, distinct names: '%' is escaped too
  std::set<std::string> names;
  for (const char* id : {"a/b", "a%2Fb", "a%b", "a%25b", "a\\b", "a_b", "%", "%25", ""})
    EXPECT_TRUE(names.insert(file_name_of_id(id)).second) << id;
  for (const std::string& n : names) EXPECT_EQ(n.find('/'), std::string::npos) << n;
}

TEST(Csv, ErrorsNameFileLineAndField) {
  std::string text = "image,level\n";
  for (int i = 0; i < 15; ++i) text += std::to_string(i) + "_left,0\n";  // lines 2..16
  text += "16_left,x\n";                                                 // line 17
  const CsvTable t = parse_csv(text, "labels.csv");
  EXPECT_CONTAINS(error_of([&] { t.integer(15, 1, 0, 4); }),
                  "labels.csv:17: field 'level' is 'x', not an integer 0-4");
  EXPECT_CONTAINS(error_of([&] { t.integer(0, 1, 1, 4); }), "labels.csv:2: field 'level' is '0'");
  for (const char* bad : {"5", "-1", "2.0", "", "1x", "99999999999999999999"}) {
    const CsvTable u = parse_csv(std::string("image,level\na,") + bad + "\n", "u.csv");
    EXPECT_CONTAINS(error_of([&] { u.integer(0, 1, 0, 4); }), "u.csv:2: field 'level'") << bad;
  }
  EXPECT_EQ(parse_csv("image,level\na, 3 \n", "v.csv").integer(0, 1, 0, 4), 3);

  EXPECT_CONTAINS(error_of([] { parse_csv("a,b\n1,2\n1,2,3\n", "f.csv"); }),
                  "f.csv:3: 3 fields, but the header 'a,b' has 2");
  EXPECT_CONTAINS(error_of([] { parse_csv("a,b\n1,2\n\"open,2\n3,4\n", "q.csv"); }),
                  "q.csv:3: quoted field 1 is not closed");
  EXPECT_CONTAINS(error_of([] { parse_csv("a,b\nx\"y,2\n", "q.csv"); }),
                  "q.csv:2: quote inside unquoted field 1");
  EXPECT_CONTAINS(error_of([] { parse_csv("a,b\n1,\"x\"y\n", "q.csv"); }),
                  "q.csv:2: text after the closing quote of field 2");
  EXPECT_CONTAINS(error_of([] { parse_csv("a,b\r1,2\n", "q.csv"); }), "q.csv:1: bare carriage return");
  EXPECT_CONTAINS(error_of([] { parse_csv("a,a\n", "h.csv"); }), "h.csv:1: header names column 'a' twice");
  EXPECT_CONTAINS(error_of([] { parse_csv("a,,b\n", "h.csv"); }), "h.csv:1: header column 2 has no name");
  EXPECT_CONTAINS(error_of([] { parse_csv("", "e.csv"); }), "e.csv: empty CSV file");
  EXPECT_CONTAINS(error_of([] { read_csv("/nonexistent/fovea/labels.csv"); }),
                  "/nonexistent/fovea/labels.csv: cannot open");
  const CsvTable t2 = parse_csv("a,b\n1,2\n", "c.csv");
  EXPECT_CONTAINS(error_of([&] { t2.require_column("level"); }), "c.csv: no column 'level' in header 'a,b'");
}

// ---- loaders ------------------------------------------------------------------------------------

TEST(Dataset, EyepacsSearchOrderPatientsAndLabels) {
  TempDir dir;
  const fs::path d = dir.path();
  write_text(d / "labels.csv", "image,level\n10_left,0\n10_right,2\n7_left,4\nsub/3_right,1\n");
  touch(d / "images" / "10_left.jpeg");
  touch(d / "10_right.png");  // the CSV's own folder is searched before images/
  touch(d / "images" / "10_right.jpeg");
  touch(d / "train" / "7_left.png");  // .jpeg is preferred, but .png is found
  touch(d / "images" / "sub" / "3_right.jpeg");
  const Dataset ds = load_dataset(d);
  EXPECT_EQ(ds.format, DatasetFormat::eyepacs);
  EXPECT_EQ(ds.num_classes, 5);
  ASSERT_EQ(ds.size(), 4u);
  EXPECT_EQ(ds[0].path, d / "images" / "10_left.jpeg");
  EXPECT_EQ(ds[1].path, d / "10_right.png");
  EXPECT_EQ(ds[2].path, d / "train" / "7_left.png");
  EXPECT_EQ(ds[3].path, d / "images" / "sub" / "3_right.jpeg");
  EXPECT_EQ(ds.labels(), (std::vector<int>{0, 2, 4, 1}));
  EXPECT_EQ(ds[0].patient, "10");
  EXPECT_EQ(ds[1].patient, "10");
  EXPECT_EQ(ds[3].id, "sub/3_right");
  EXPECT_EQ(ds[3].patient, "3");
  EXPECT_EQ(ds.patient_count(), 3u);
  // Names with more underscores keep everything before the eye suffix (fovea's synthetic set).
  EXPECT_EQ(patient_before_underscore("synthetic_12_right"), "synthetic_12");
  EXPECT_EQ(patient_before_underscore("synthetic_12_left"), "synthetic_12");
  EXPECT_EQ(patient_before_underscore("abc_def"), "abc");
  EXPECT_EQ(ds.class_counts(), (std::vector<std::size_t>{1, 1, 1, 0, 1}));

  touch(d / "images" / "10_left.png");  // .jpeg still wins over .png in the same folder
  EXPECT_EQ(load_labels_csv(d / "labels.csv")[0].path, d / "images" / "10_left.jpeg");

  DatasetOptions custom;
  custom.patient = [](std::string_view id) { return "p" + std::string(id.substr(id.size() - 4)); };
  EXPECT_EQ(load_labels_csv(d / "labels.csv", custom)[0].patient, "pleft");
}

TEST(Dataset, MissingImagesFailOrAreSkipped) {
  TempDir dir;
  const fs::path d = dir.path();
  write_text(d / "labels.csv", "image,level\n1_left,0\n2_left,1\n3_left,2\n");
  touch(d / "images" / "1_left.jpeg");
  touch(d / "images" / "3_left.jpeg");
  const std::string e = error_of([&] { load_labels_csv(d / "labels.csv"); });
  EXPECT_CONTAINS(e, "labels.csv:3: image '2_left' not found");
  EXPECT_CONTAINS(e, (d / "images").string());
  EXPECT_CONTAINS(e, ".jpeg,.jpg,.png,.tif,.tiff");

  DatasetOptions skip;
  skip.skip_missing = true;
  const Dataset ds = load_labels_csv(d / "labels.csv", skip);
  ASSERT_EQ(ds.size(), 2u);
  EXPECT_EQ(ds[1].id, "3_left");
  ASSERT_EQ(ds.missing.size(), 1u);
  EXPECT_CONTAINS(ds.missing[0], "labels.csv:3: image '2_left' not found");
  EXPECT_EQ(ds.missing_ids, (std::vector<std::string>{"2_left"}));
}

// The image extension matches in any case (Messidor-2 mixes IM002385.JPG with .png files) where no
// file matches exactly; the stem stays case-sensitive; an exact name wins; of two case variants the
// first in byte order.
TEST(Dataset, ImageExtensionsMatchInAnyCase) {
  TempDir dir;
  const fs::path d = dir.path();
  write_text(d / "labels.csv", "image,level\nIM01,0\nIM02.jpg,1\nim03,2\nIM04,3\nIM05.PNG,4\nIM06.jpeg,0\n");
  touch(d / "images" / "IM01.JPG");
  touch(d / "images" / "IM02.JPG");
  touch(d / "images" / "IM03.png");  // 'im03' differs in the stem: not found
  touch(d / "images" / "IM04.Png");
  touch(d / "images" / "IM04.PNG");  // byte order: IM04.PNG < IM04.Png
  touch(d / "images" / "IM05.png");
  touch(d / "images" / "IM06.JPEG");
  touch(d / "images" / "IM06.jpeg");  // exact
  DatasetOptions skip;
  skip.skip_missing = true;
  const Dataset ds = load_labels_csv(d / "labels.csv", skip);
  ASSERT_EQ(ds.size(), 5u);
  EXPECT_EQ(ds[0].path, d / "images" / "IM01.JPG");
  EXPECT_EQ(ds[1].path, d / "images" / "IM02.JPG");
  EXPECT_EQ(ds[1].id, "IM02");
  EXPECT_EQ(ds[2].path, d / "images" / "IM04.PNG");
  EXPECT_EQ(ds[3].path, d / "images" / "IM05.png");
  EXPECT_EQ(ds[4].path, d / "images" / "IM06.jpeg");
  EXPECT_EQ(ds.missing_ids, (std::vector<std::string>{"im03"}));
}

TEST(Dataset, RejectsBadRows) {
  TempDir dir;
  const fs::path d = dir.path();
  touch(d / "a_1.jpeg");
  write_text(d / "bad_grade.csv", "image,level\na_1,5\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "bad_grade.csv"); }),
                  "bad_grade.csv:2: field 'level' is '5', not an integer 0-4");
  write_text(d / "dup.csv", "image,level\na_1,1\na_1.jpeg,1\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "dup.csv"); }),
                  "dup.csv:3: image 'a_1' is listed twice (first on line 2)");
  write_text(d / "unknown.csv", "file,grade\na_1,1\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "unknown.csv"); }),
                  "unknown.csv: unrecognised label file header 'file,grade'");
  write_text(d / "split.csv", "image,split\na_1,train\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "split.csv"); }), "read_split");
  EXPECT_CONTAINS(error_of([&] { load_dataset(d / "nothing"); }), "no such file or folder");
}

TEST(Dataset, AptosAndIdridGrading) {
  TempDir dir;
  const fs::path d = dir.path();
  write_text(d / "train.csv", "id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n");
  touch(d / "train_images" / "000c1434d8d7.png");
  touch(d / "train_images" / "000c1434d8d7.jpeg");  // APTOS prefers .png
  touch(d / "train_images" / "001639a390f0.png");
  const Dataset aptos = load_dataset(d);
  EXPECT_EQ(aptos.format, DatasetFormat::aptos);
  ASSERT_EQ(aptos.size(), 2u);
  EXPECT_EQ(aptos[0].path, d / "train_images" / "000c1434d8d7.png");
  EXPECT_EQ(aptos[0].patient, "000c1434d8d7");
  EXPECT_EQ(aptos.labels(), (std::vector<int>{2, 4}));

  // IDRiD: a trailing space in a header name, trailing empty columns, images in a separate folder.
  write_text(d / "idrid" / "labels" / "grades.csv",
             "Image name,Retinopathy grade,Risk of macular edema ,,\n"
             "IDRiD_001,3,2,,\nIDRiD_002,0,0,,\n");
  touch(d / "idrid" / "img" / "IDRiD_001.jpg");
  touch(d / "idrid" / "img" / "IDRiD_002.jpg");
  DatasetOptions opt;
  opt.image_dir = d / "idrid" / "img";
  const Dataset idrid = load_labels_csv(d / "idrid" / "labels" / "grades.csv", opt);
  EXPECT_EQ(idrid.format, DatasetFormat::idrid_grading);
  ASSERT_EQ(idrid.size(), 2u);
  EXPECT_EQ(idrid[0].path, d / "idrid" / "img" / "IDRiD_001.jpg");
  EXPECT_EQ(idrid[0].label, 3);
  EXPECT_EQ(idrid[0].patient, "IDRiD_001");  // not "IDRiD": every IDRiD image is its own patient
}

TEST(Dataset, Messidor2AdjudicatedGrades) {
  TempDir dir;
  const fs::path d = dir.path();
  // Krause et al.'s file as pandas writes it: float grades, an ungradable image with no grade.
  write_text(d / "messidor_data.csv",
             "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n"
             "20051020_43808_0100_PP.png,0.0,0.0,1\n"
             "IM002385.JPG,,,0\n"
             "20051020_43832_0100_PP.png,3.0,1.0,1\n"
             "IM004176.JPG,2,0,1\n");
  touch(d / "IMAGES" / "20051020_43808_0100_PP.png");
  touch(d / "IMAGES" / "20051020_43832_0100_PP.png");
  touch(d / "IMAGES" / "IM004176.png");  // the grade file names the .JPG; the copy here is a .png
  const Dataset m = load_dataset(d);
  EXPECT_EQ(m.format, DatasetFormat::messidor2);
  EXPECT_STREQ(format_name(m.format), "messidor2");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.labels(), (std::vector<int>{0, 3, 2}));
  EXPECT_EQ(m[0].id, "20051020_43808_0100_PP");
  EXPECT_EQ(m[0].path, d / "IMAGES" / "20051020_43808_0100_PP.png");
  EXPECT_EQ(m[2].path, d / "IMAGES" / "IM004176.png");
  EXPECT_EQ(m[1].patient, "20051020_43832_0100_PP");  // every image its own patient
  ASSERT_EQ(m.excluded.size(), 1u);
  EXPECT_CONTAINS(m.excluded[0], "messidor_data.csv:3: image 'IM002385.JPG' is ungradable");

  // A fractional or missing grade of a gradable image is an error naming the line.
  write_text(d / "half.csv",
             "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n"
             "20051020_43808_0100_PP.png,2.5,0,1\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "half.csv"); }),
                  "half.csv:2: field 'adjudicated_dr_grade' is '2.5', not an integer 0-4");
  write_text(d / "empty.csv",
             "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n"
             "20051020_43808_0100_PP.png,,0,1\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "empty.csv"); }),
                  "empty.csv:2: field 'adjudicated_dr_grade' is '', not an integer 0-4");
  write_text(d / "flag.csv",
             "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n"
             "20051020_43808_0100_PP.png,1,0,yes\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "flag.csv"); }),
                  "flag.csv:2: field 'adjudicated_gradable' is 'yes', not an integer 0-1");
}

// Messidor-1's annotation sheet as CSV: it shares IDRiD's "Image name,Retinopathy grade" columns, so
// its department column must route it to the Messidor-1 loader, whose grades are Messidor's 0-3 scale:
// map_labels gives only the binary schemes (referable >= 2 or 3, any DR) and refuses the ICDR grades.
TEST(Dataset, Messidor1GradesAreNotIcdrGrades) {
  TempDir dir;
  const fs::path d = dir.path();
  write_text(d / "Annotation_Base11.csv",
             "Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema \n"
             "20051019_38557_0100_PP.tif,Service Ophtalmologie Lariboisi\xc3\xa8re,0,0\n"
             "20051020_43808_0100_PP.tif,Service Ophtalmologie Lariboisi\xc3\xa8re,1,0\n"
             "20051020_43832_0100_PP.tif,Service Ophtalmologie Lariboisi\xc3\xa8re,2,1\n"
             "20051020_44261_0100_PP.tif,Service Ophtalmologie Lariboisi\xc3\xa8re,3,2\n");
  for (const char* name : {"20051019_38557_0100_PP.tif", "20051020_43808_0100_PP.tif",
                           "20051020_43832_0100_PP.tif", "20051020_44261_0100_PP.tif"})
    touch(d / "Base11" / name);
  DatasetOptions opt;
  opt.image_dir = d / "Base11";
  const Dataset m = load_labels_csv(d / "Annotation_Base11.csv", opt);
  EXPECT_EQ(m.format, DatasetFormat::messidor1);
  EXPECT_STREQ(format_name(m.format), "messidor1");
  EXPECT_EQ(m.num_classes, kMessidor1Grades);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m.labels(), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(m[0].id, "20051019_38557_0100_PP");
  EXPECT_EQ(m[0].path, d / "Base11" / "20051019_38557_0100_PP.tif");
  EXPECT_EQ(m[1].patient, "20051020_43808_0100_PP");  // not the date before the first '_'
  EXPECT_EQ(m.class_counts(), (std::vector<std::size_t>{1, 1, 1, 1}));

  EXPECT_EQ(map_labels(m, LabelScheme::referable(2)).labels(), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(map_labels(m, LabelScheme::referable(3)).labels(), (std::vector<int>{0, 0, 0, 1}));
  EXPECT_EQ(map_labels(m, LabelScheme::any_dr()).labels(), (std::vector<int>{0, 1, 1, 1}));
  EXPECT_EQ(map_labels(m, LabelScheme::any_dr()).num_classes, 2);
  const std::string grades = error_of([&] { map_labels(m, LabelScheme::grades()); });
  EXPECT_CONTAINS(grades, "Annotation_Base11.csv holds Messidor-1 grades (0-3, Messidor's own scale)");
  EXPECT_CONTAINS(grades, "--as-binary");
  EXPECT_CONTAINS(error_of([&] { map_labels(m, LabelScheme::referable(4)); }), "referable>=4");

  // A grade 4 does not exist on Messidor-1's scale.
  write_text(d / "four.csv",
             "Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema\n"
             "20051019_38557_0100_PP.tif,CHU de St Etienne,4,0\n");
  EXPECT_CONTAINS(error_of([&] { load_labels_csv(d / "four.csv", opt); }),
                  "four.csv:2: field 'Retinopathy grade' is '4', not an integer 0-3");
  // The same columns without the department are IDRiD's grading file, on the ICDR scale.
  write_text(d / "idrid.csv",
             "Image name,Retinopathy grade,Risk of macular edema\n20051019_38557_0100_PP.tif,4,0\n");
  const Dataset i = load_labels_csv(d / "idrid.csv", opt);
  EXPECT_EQ(i.format, DatasetFormat::idrid_grading);
  EXPECT_EQ(i.num_classes, kNumGrades);
  EXPECT_EQ(map_labels(i, LabelScheme::grades()).labels(), (std::vector<int>{4}));
}

TEST(Dataset, ClassFoldersAndUnlabelledFolders) {
  TempDir dir;
  const fs::path d = dir.path() / "classes";
  touch(d / "0" / "5_left.png");
  touch(d / "0" / "5_right.PNG");
  touch(d / "2" / "sub" / "9_left.jpg");
  touch(d / "2" / "notes.txt");
  touch(d / "extra" / "1_left.png");  // not a class number: ignored
  const Dataset ds = load_dataset(d);
  EXPECT_EQ(ds.format, DatasetFormat::class_folders);
  EXPECT_EQ(ds.num_classes, 3);
  ASSERT_EQ(ds.size(), 3u);
  EXPECT_EQ(ds[0].id, "5_left");
  EXPECT_EQ(ds[1].id, "5_right");
  EXPECT_EQ(ds[2].id, "sub/9_left");
  EXPECT_EQ(ds.labels(), (std::vector<int>{0, 0, 2}));
  EXPECT_EQ(ds[2].patient, "9");
  EXPECT_EQ(ds[2].path, d / "2" / "sub" / "9_left.jpg");
  touch(d / "2" / "5_left.tif");
  EXPECT_CONTAINS(error_of([&] { load_class_folders(d); }), "image '5_left' is in class folders 0 and 2");

  const fs::path u = dir.path() / "unlabelled";
  touch(u / "b" / "2_right.tiff");
  touch(u / "a_1.jpeg");
  touch(u / ".hidden" / "x_1.png");
  touch(u / "readme.md");
  const Dataset un = load_dataset(u);
  EXPECT_EQ(un.format, DatasetFormat::unlabelled_folder);
  EXPECT_EQ(un.num_classes, 0);
  ASSERT_EQ(un.size(), 2u);
  EXPECT_EQ(un[0].id, "a_1");
  EXPECT_EQ(un[1].id, "b/2_right");
  EXPECT_EQ(un[1].label, kUnlabelled);
  EXPECT_EQ(un[1].patient, "2");
}

TEST(Dataset, LesionMasks) {
  TempDir dir;
  const fs::path d = dir.path();
  write_text(d / "lesion_masks.csv",
             "image,lesion_type,mask_path,lesion_pixels\n"
             "IDRiD_01.jpg,MA,masks/MA/IDRiD_01_MA.png,12\n"
             "IDRiD_01.jpg,EX,masks/EX/IDRiD_01_EX.png,300\n"
             "IDRiD_02.jpg,MA,masks/MA/IDRiD_02_MA.png,7\n");
  for (const char* m : {"MA/IDRiD_01_MA.png", "EX/IDRiD_01_EX.png", "MA/IDRiD_02_MA.png"})
    touch(d / "masks" / m);
  touch(d / "images" / "IDRiD_01.jpg");
  touch(d / "images" / "IDRiD_02.jpg");
  const LesionMasks m = load_lesion_masks(d / "lesion_masks.csv");
  EXPECT_EQ(m.images(), (std::vector<std::string>{"IDRiD_01", "IDRiD_02"}));
  ASSERT_NE(m.find("IDRiD_01", "EX"), nullptr);
  EXPECT_EQ(m.find("IDRiD_01.jpg", "EX")->path, d / "masks" / "EX" / "IDRiD_01_EX.png");
  EXPECT_EQ(m.find("IDRiD_01", "EX")->pixels, 300);
  EXPECT_EQ(m.find("IDRiD_02", "EX"), nullptr);
  EXPECT_EQ(m.count("MA"), 2u);
  const Dataset images = load_dataset(d / "lesion_masks.csv");
  EXPECT_EQ(images.format, DatasetFormat::idrid_lesions);
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[1].path, d / "images" / "IDRiD_02.jpg");
  EXPECT_EQ(images[1].label, kUnlabelled);

  write_text(d / "bad.csv", "image,lesion_type,mask_path\nIDRiD_01.jpg,XX,masks/MA/IDRiD_01_MA.png\n");
  EXPECT_CONTAINS(error_of([&] { load_lesion_masks(d / "bad.csv"); }),
                  "bad.csv:2: field 'lesion_type' is 'XX', not one of MA, HE, EX, SE, OD, NV");
  write_text(d / "missing.csv", "image,lesion_type,mask_path\nIDRiD_01.jpg,HE,masks/HE/IDRiD_01_HE.png\n");
  EXPECT_CONTAINS(error_of([&] { load_lesion_masks(d / "missing.csv"); }), "missing.csv:2: mask file");
  DatasetOptions skip;
  skip.skip_missing = true;
  EXPECT_EQ(load_lesion_masks(d / "missing.csv", skip).missing.size(), 1u);
}

TEST(Dataset, LabelSchemes) {
  Dataset d;
  for (int g : {0, 1, 2, 3, 4, kUnlabelled})
    d.samples.push_back(Sample{"x" + std::to_string(g + 1), {}, g, "p"});
  const Dataset r2 = map_labels(d, LabelScheme::referable());
  EXPECT_EQ(r2.labels(), (std::vector<int>{0, 0, 1, 1, 1, kUnlabelled}));
  EXPECT_EQ(r2.num_classes, 2);
  EXPECT_EQ(map_labels(d, LabelScheme::referable(3)).labels(),
            (std::vector<int>{0, 0, 0, 1, 1, kUnlabelled}));
  EXPECT_EQ(map_labels(d, LabelScheme::any_dr()).labels(), (std::vector<int>{0, 1, 1, 1, 1, kUnlabelled}));
  EXPECT_EQ(map_labels(d, LabelScheme::grades()).labels(), d.labels());
  EXPECT_CONTAINS(error_of([&] { map_labels(r2, LabelScheme::any_dr()); }), "already mapped");
  EXPECT_EQ(parse_label_scheme("referable>=3").threshold, 3);
  EXPECT_EQ(parse_label_scheme("referable").name(), "referable>=2");
  EXPECT_EQ(parse_label_scheme("any_dr").kind, LabelKind::any_dr);
  EXPECT_CONTAINS(error_of([] { parse_label_scheme("binary"); }), "unknown label scheme 'binary'");
}

// ---- splits and fractions -----------------------------------------------------------------------

// An in-memory EyePACS-like data set: `patients` patients with one or two eyes, grades skewed like
// EyePACS (many 0s, few 3s and 4s), the second eye's grade close to the first.
Dataset synthetic_dataset(int patients, std::uint64_t seed) {
  Dataset d;
  Philox rng(make_key(seed, kPurposeTest));
  const float cumulative[] = {0.55f, 0.70f, 0.90f, 0.95f, 1.0f};
  for (int p = 0; p < patients; ++p) {
    const float u = rng.next_uniform();
    int grade = 0;
    while (u >= cumulative[grade]) ++grade;
    d.samples.push_back(Sample{std::to_string(p) + "_left", {}, grade, std::to_string(p)});
    if (rng.uniform_int(4) != 0) {
      const int other = std::clamp(grade + static_cast<int>(rng.uniform_int(3)) - 1, 0, 4);
      d.samples.push_back(Sample{std::to_string(p) + "_right", {}, other, std::to_string(p)});
    }
  }
  return d;
}

// Patients per stratum (largest grade) in `d`.
std::map<int, int> patients_per_stratum(const Dataset& d) {
  std::map<std::string, int> stratum;
  for (const Sample& s : d.samples) {
    auto [it, fresh] = stratum.emplace(s.patient, s.label);
    if (!fresh) it->second = std::max(it->second, s.label);
  }
  std::map<int, int> counts;
  for (const auto& [p, g] : stratum) ++counts[g];
  return counts;
}

TEST(Split, GroupedByPatientAndStratified) {
  const Dataset d = synthetic_dataset(700, 1);
  const SplitFractions f{0.15, 0.2};
  const DatasetSplits s = split_dataset(d, f, 42);
  EXPECT_TRUE(shared_patients(s).empty());
  EXPECT_EQ(s.train.size() + s.validation.size() + s.test.size(), d.size());
  const auto all = patients_per_stratum(d);
  ASSERT_EQ(all.size(), 5u);
  for (auto [split, share] : {std::pair{Split::train, 1.0 - f.validation - f.test},
                              std::pair{Split::validation, f.validation}, std::pair{Split::test, f.test}}) {
    const auto part = patients_per_stratum(s[split]);
    for (const auto& [stratum, n] : all) {
      const int got = part.count(stratum) ? part.at(stratum) : 0;
      EXPECT_LE(std::abs(got - n * share), 1.0)
          << split_name(split) << " stratum " << stratum << ": " << got << " of " << n << " patients";
    }
  }
  // Deterministic, seed-dependent, and independent of the sample order.
  EXPECT_EQ(assign_splits(d, f, 42), s.assignment);
  EXPECT_NE(assign_splits(d, f, 43), s.assignment);
  Dataset reversed = d;
  std::reverse(reversed.samples.begin(), reversed.samples.end());
  const std::vector<Split> r = assign_splits(reversed, f, 42);
  for (std::size_t i = 0; i < d.size(); ++i) ASSERT_EQ(r[d.size() - 1 - i], s.assignment[i]);

  EXPECT_CONTAINS(error_of([&] { assign_splits(d, {0.6, 0.5}, 1); }), "sum to at most 1");
  // The check that catches a leak: a split by image puts both eyes of some patient in two splits.
  std::vector<Split> by_image(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) by_image[i] = static_cast<Split>(i % 3);
  EXPECT_FALSE(shared_patients(apply_split(d, by_image)).empty());
}

TEST(Split, LabelFractionsKeepProportionsAndAreNested) {
  const Dataset d = synthetic_dataset(900, 2);
  const auto all = patients_per_stratum(d);
  std::vector<std::size_t> previous;
  for (double fraction : {0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0}) {
    const std::vector<std::size_t> idx = subsample_indices(d, fraction, 7);
    const Dataset sub = d.subset(idx);
    const auto part = patients_per_stratum(sub);
    for (const auto& [stratum, n] : all) {
      const int got = part.count(stratum) ? part.at(stratum) : 0;
      EXPECT_LE(std::abs(got - n * fraction), 1.0) << "fraction " << fraction << " stratum " << stratum;
      if (fraction > 0) {
        EXPECT_GE(got, 1) << "every grade keeps a patient";
      }
    }
    // Whole patients only.
    std::set<std::string> kept;
    for (const Sample& s : sub.samples) kept.insert(s.patient);
    std::size_t whole = 0;
    for (const Sample& s : d.samples) whole += kept.count(s.patient);
    EXPECT_EQ(whole, sub.size()) << "fraction " << fraction;
    // Nested: the smaller fraction is a subset of the larger one.
    EXPECT_TRUE(std::includes(idx.begin(), idx.end(), previous.begin(), previous.end()))
        << "fraction " << fraction;
    previous = idx;
  }
  EXPECT_EQ(subsample_indices(d, 1.0, 7).size(), d.size());
  EXPECT_EQ(subsample(d, 0.2, 7).size(), subsample_indices(d, 0.2, 7).size());
  EXPECT_NE(subsample_indices(d, 0.2, 8), subsample_indices(d, 0.2, 7));
  EXPECT_CONTAINS(error_of([&] { subsample(d, 1.5, 1); }), "outside [0, 1]");
}

TEST(Split, FileRoundTrip) {
  TempDir dir;
  const Dataset d = synthetic_dataset(50, 3);
  const DatasetSplits s = split_dataset(d, {0.2, 0.2}, 9);
  write_split(dir.path() / "split.csv", d, s);
  const SplitFile f = read_split(dir.path() / "split.csv");
  EXPECT_EQ(f.assignment_for(d), s.assignment);
  const DatasetSplits again = apply_split(d, f.assignment_for(d));
  EXPECT_EQ(again.test.size(), s.test.size());

  Dataset more = d;
  more.samples.push_back(Sample{"999_left", {}, 0, "999"});
  EXPECT_CONTAINS(error_of([&] { f.assignment_for(more); }), "no split for image '999_left'");
  write_text(dir.path() / "bad.csv", "image,split\n1_left,train\n2_left,holdout\n");
  EXPECT_CONTAINS(error_of([&] { read_split(dir.path() / "bad.csv"); }),
                  "bad.csv:3: field 'split' is 'holdout', not train, validation or test");
  write_text(dir.path() / "ext.csv", "image,split\nIDRiD_01.jpg,train\nIDRiD_02.jpg,val\n");
  const SplitFile e = read_split(dir.path() / "ext.csv");
  EXPECT_EQ(e.by_id.at("IDRiD_02"), Split::validation);
}

// ---- the real fundus subsets --------------------------------------------------------------------

TEST(RealData, EyepacsLabels) {
  const fs::path fundus = fundus_dir();
  if (fundus.empty() || !fs::is_regular_file(fundus / "eyepacs" / "labels.csv"))
    GTEST_SKIP() << "shared/data/fundus/eyepacs not found (set FOVEA_SHARED_DATA to the fundus folder)";
  const Dataset d = load_dataset(fundus / "eyepacs");
  EXPECT_EQ(d.format, DatasetFormat::eyepacs);
  ASSERT_EQ(d.size(), 3451u);
  EXPECT_EQ(d.class_counts(), (std::vector<std::size_t>{2000, 390, 831, 125, 105}));
  EXPECT_EQ(d.patient_count(), 2249u);
  EXPECT_EQ(d[0].id, "10003_right");
  EXPECT_EQ(d[0].path, fundus / "eyepacs" / "images" / "10003_right.jpeg");
  EXPECT_EQ(d[0].patient, "10003");

  const DatasetSplits s = split_dataset(d, {0.1, 0.2}, 1);
  EXPECT_TRUE(shared_patients(s).empty());
  EXPECT_NEAR(static_cast<double>(s.test.size()) / d.size(), 0.2, 0.02);
  const auto a = subsample_indices(s.train, 0.1, 1), b = subsample_indices(s.train, 0.2, 1);
  EXPECT_TRUE(std::includes(b.begin(), b.end(), a.begin(), a.end()));

  const Dataset raw = load_labels_csv(fundus / "eyepacs" / "raw_fullres_labels.csv");
  ASSERT_EQ(raw.size(), 1u);
  EXPECT_EQ(raw[0].id, "raw_fullres/16_right");
  EXPECT_EQ(raw[0].patient, "16");
  EXPECT_EQ(raw[0].label, 4);
}

TEST(RealData, IdridLesionMasks) {
  const fs::path fundus = fundus_dir();
  if (fundus.empty() || !fs::is_regular_file(fundus / "idrid" / "lesion_masks.csv"))
    GTEST_SKIP() << "shared/data/fundus/idrid not found (set FOVEA_SHARED_DATA to the fundus folder)";
  const LesionMasks m = load_lesion_masks(fundus / "idrid" / "lesion_masks.csv");
  EXPECT_EQ(m.by_image.size(), 81u);
  EXPECT_EQ(m.count("MA"), 81u);
  EXPECT_EQ(m.count("HE"), 80u);
  EXPECT_EQ(m.count("EX"), 81u);
  EXPECT_EQ(m.count("SE"), 40u);
  EXPECT_EQ(m.count("OD"), 81u);
  const Dataset images = load_dataset(fundus / "idrid" / "lesion_masks.csv");
  EXPECT_EQ(images.size(), 81u);
  EXPECT_EQ(images.patient_count(), 81u);
  const SplitFile official = read_split(fundus / "idrid" / "images.csv");
  const DatasetSplits s = apply_split(images, official.assignment_for(images));
  EXPECT_EQ(s.train.size(), 54u);
  EXPECT_EQ(s.test.size(), 27u);
}

}  // namespace
}  // namespace fovea::data
