-- Tables the benchmarks read and write (bench/run.sh loads this once).
DROP TABLE IF EXISTS bench_rows;
CREATE TABLE bench_rows (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  score DOUBLE NOT NULL,
  big BIGINT NOT NULL,
  created DATETIME NOT NULL,
  note TEXT NULL
) ENGINE=InnoDB;
-- 100,000 rows; every third note is NULL (MariaDB's sequence engine)
INSERT INTO bench_rows
SELECT seq,
       CONCAT('name-', seq, '-', REPEAT('x', seq % 20)),
       seq * 1.25 + 0.1,
       seq * 1000003,
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
       IF(seq % 3 = 0, NULL, CONCAT('note ', seq))
FROM seq_1_to_100000;
DROP TABLE IF EXISTS bench_ins;
CREATE TABLE bench_ins (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  a INT NOT NULL,
  b VARCHAR(64) NOT NULL
) ENGINE=InnoDB;
