-- One MariaDB user per system of the OpenResty load test (bench/ngx.sh,
-- bench/ngx_cost.sh), so that the server's processlist tells each one's
-- connections apart. No password; the throwaway server only.
CREATE USER IF NOT EXISTS 'b_inline'@'%';
CREATE USER IF NOT EXISTS 'b_offload'@'%';
CREATE USER IF NOT EXISTS 'b_nb'@'%';
CREATE USER IF NOT EXISTS 'b_nbwide'@'%';
CREATE USER IF NOT EXISTS 'b_nbover'@'%';
CREATE USER IF NOT EXISTS 'b_bell'@'%';
CREATE USER IF NOT EXISTS 'b_resty'@'%';
GRANT ALL ON scoped_test.* TO 'b_inline'@'%', 'b_offload'@'%', 'b_nb'@'%', 'b_nbwide'@'%', 'b_nbover'@'%', 'b_bell'@'%', 'b_resty'@'%';
DROP TABLE IF EXISTS ngx_bench;
CREATE TABLE ngx_bench (id INT AUTO_INCREMENT PRIMARY KEY, w INT, note VARCHAR(32));
