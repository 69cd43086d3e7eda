package server

// Exports for the black-box tests in package server_test.

type (
	Chart       = chart
	ChartSeries = series
	ChartPoint  = chartPoint
)

var LineChart = lineChart
