package tabular

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// TestScanRefusesWhatIsNotATable: a file that is not a table (a key file, a
// token, a configuration file, a CSV without a header) is an error, not a
// schema, and the error never repeats what would have become a column name.
func TestScanRefusesWhatIsNotATable(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	secret := base64.StdEncoding.EncodeToString(key) // a sealing key file's one line
	token := "silo_" + hex.EncodeToString(key)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"key file", secret + "\n", "opaque token"},
		{"key file with rows", secret + "\nx\ny\n", "opaque token"},
		{"token", "name,token\nci," + token + "\n" + token + ",x\n", ""}, // a token in a row is data, not a name
		{"token header", "name," + token + "\nci,x\n", "opaque token"},
		{"hex digest", "id," + hex.EncodeToString(key[:12]) + "\n1,2\n", "opaque token"},
		{"argon2 hash", "$argon2id$v=19$m=65536$" + secret + "\n1\n", "opaque token"},
		{"config line", "SECRET_KEY=hunter2-but-longer\nDEBUG=1\n", "unusual characters"},
		{"headerless numbers", "34,1.72,2024-01-05,true\n51,1.80,2024-01-06,false\n", "values"},
		{"header only", "age,bmi,smoker\n", "no data rows"},
		{"control characters", "a,b\x01c\n" + strings.Repeat("1,2\n", 60), "control characters"},
		{"binary", "a,b\x01\x02\x03c\n1,2\n", "binary content"},
		{"long name", "a," + strings.Repeat("word ", 60) + "\n1,2\n", "longer than 256"},
		{"invalid utf-8", "a,b\xff\xfe\n1,2\n", "not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Scan(context.Background(), []Input{&memInput{"f.csv", []byte(tc.data)}}, ScanOptions{MinRecordsPerAggregate: 1})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("scanned as a table: %+v", p.Columns)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			for _, leak := range []string{secret, token, "hunter2", "argon2id", "SECRET_KEY"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("the error repeats the file's content: %q", err)
				}
			}
		})
	}
}

// TestScanAcceptsRealHeaders: names of real datasets pass the checks.
func TestScanAcceptsRealHeaders(t *testing.T) {
	headers := []string{
		"patient_id,age,bmi,smoker,readmitted",
		"mean radius,mean texture,worst concave points,diagnosis",
		"BloodPressureSystolicMean,HbA1cMeasurementValue2020,number_of_previous_hospital_admissions_in_last_12_months",
		"Größe (cm),Gewicht [kg],Raucher?,Ort/Region,% fat,visit #",
		"id,cost ($),name", // one odd name among three is fine
		"年龄,性别,诊断",
	}
	for _, h := range headers {
		cols := strings.Count(h, ",") + 1
		row := strings.TrimSuffix(strings.Repeat("x,", cols), ",")
		if _, err := Scan(context.Background(), []Input{&memInput{"f.csv", []byte(h + "\n" + row + "\n")}}, ScanOptions{}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
}
